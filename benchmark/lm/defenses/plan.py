"""Plan-time side of the defenses: one ``defense`` node per dataset when ``settings.dataset.defense`` is set.

Torch-free. A defense node's spec holds the dataset's id, the defense's name, the settings the plug-in reads
(``fraction`` for the divergence defenses, ``model`` for ``paraphrase``, nothing else), a seed derived from the
dataset's seed, for the divergence defenses the ids of the teachers that score the rows (the other arms' teachers of
the same teacher base and replicate index) and of the base, and for ``paraphrase`` the rewriter's base node id, its
prompt's id and its reply budget. With no defense, or ``none``, nothing is planned: every node id of a suite
is what it was before defenses existed, and students read the dataset itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchmark.dag import Node
from benchmark.errors import UserError
from benchmark.hashing import derive_seed
from benchmark.lm.defenses.base import NONE, plugin
from benchmark.vocabulary import NEUTRAL

__all__ = ["check_defense", "defense_nodes"]


def check_defense(suite: Any, settings: Any, local: Callable[[str], bool],
                  model: Callable[[str, str], Any] | None = None) -> None:
    """Refuse, at plan time, a defense the suite's channel or teachers cannot serve (one line naming the key).

    ``model(name, where)`` looks a registry model up (raising the registry's one-line error naming ``where``); it checks
    ``settings.dataset.defense_model`` whenever it is set. A defense that reads no model ignores it (as the text
    defenses ignore ``defense_fraction``), so one sweep over ``settings.dataset.defense`` can include ``paraphrase``.
    """
    threshold = settings.dataset.threshold
    if threshold is not None:
        where = f"suite {suite.name}: settings.dataset.threshold"
        api = [t for t in suite.teachers if not local(t)]
        if api:
            raise UserError(f"{where}: threshold sampling runs in the local generation loop; API teachers "
                            f"({', '.join(api)}) sample on the provider's side")
        if settings.dataset.temperature == 0:
            raise UserError(f"{where}: greedy data (temperature 0) samples nothing to threshold; set a temperature > 0 "
                            "or leave threshold out")
    name = settings.dataset.defense
    key = f"suite {suite.name}: settings.dataset.defense_model"
    if settings.dataset.defense_model is not None and model is not None:
        model(settings.dataset.defense_model, key)  # a typo is refused even where the defense does not read it
    if name in (None, NONE):
        return
    where = f"suite {suite.name}: settings.dataset.defense"
    defense = plugin(name, where)
    if "model" in defense.params and settings.dataset.defense_model is None:
        raise UserError(f"{key}: {name!r} needs a registry model to run (e.g. defense_model: smollm2-135m-instruct, "
                        "or an API model's name); none is set")
    channel = settings.dataset.channel
    from benchmark.lm.channels.base import load_channel

    kind = load_channel(channel)[0].name
    if kind not in defense.channels:
        raise UserError(f"{where}: {name!r} transforms the {', '.join(defense.channels)} channel only, not "
                        f"{channel!r}")
    if defense.scorers and "rewriter" not in defense.scorers:
        api = [t for t in suite.teachers if not local(t)]
        if api:
            raise UserError(f"{where}: {name!r} scores rows with the teachers' weights, which API models do not give "
                            f"({', '.join(api)})")
        if "teachers" in defense.scorers and len(suite.traits) + int(settings.aa_arm) + int(
                settings.controls == NEUTRAL) < 2:
            raise UserError(f"{where}: {name!r} compares a row's teacher with the other arms' teachers; the suite has "
                            "one arm")


def defense_nodes(settings: Any, teachers: Sequence[Any], add: Callable[[Node], Node],
                  base_keys: dict[str, Node], stage: Callable[[Any], dict[str, Any]],
                  versioned: Callable[[dict[str, Any]], dict[str, Any]],
                  resources: Callable[[str], dict[str, float]],
                  model_base: Callable[[str], Node] | None = None) -> dict[str, Node]:
    """One defense node per planned dataset (none when the suite sets no defense), by dataset key.

    Args:
        settings: The suite's LM settings.
        teachers: The planned teacher replicates (``base``, ``arm.label``, ``replicate``, ``teacher``, ``dataset``).
        add: Adds a node to the plan and returns it.
        base_keys: Base nodes by model name.
        stage: The defense stage function.
        versioned: The track's spec versioning.
        resources: Scheduler resources of a node running on a model.
        model_base: The base node of a registry model, added to the plan once (a rewriter's weights).
    """
    name = settings.dataset.defense
    if name in (None, NONE):
        return {}
    defense = plugin(name)
    rewriter = None
    if "rewriter" in defense.scorers:
        from benchmark.lm.defenses.paraphrase import TEMPLATE_ID

        assert model_base is not None and settings.dataset.defense_model is not None  # checked by check_defense
        rewriter = model_base(settings.dataset.defense_model)
    out: dict[str, Node] = {}
    for t in teachers:
        base = base_keys[t.base]
        dspec: dict[str, Any] = {"dataset": t.dataset.id, "defense": name, "base": base.id,
                                 "seed": derive_seed("lm-defense", name, t.dataset.spec["seed"]) >> 33,
                                 "labels": t.dataset.spec["labels"]}
        deps = [t.dataset.key, base.key]
        for param in defense.params:
            dspec[param] = getattr(settings.dataset, f"defense_{param}")
        if "student" in defense.scorers:  # the pilot student: the teacher's base, the suite's student recipe
            dspec["student"] = {"objective": settings.student.objective, "train": settings.student.train.hashed_dict(),
                                "seed": derive_seed("lm-defense-student", t.dataset.spec["seed"]) >> 33}
        if "teachers" in defense.scorers:
            others = [o for o in teachers if o.base == t.base and o.replicate == t.replicate and o.arm != t.arm]
            dspec["teachers"] = [o.teacher.id for o in others]
            deps += [t.teacher.key, *[o.teacher.key for o in others]]
        runs_on = t.base
        if rewriter is not None:  # the rewriter's base, its prompt and its reply budget (2 × the teacher's)
            dspec.update(rewriter=rewriter.id, template=TEMPLATE_ID,
                         max_new_tokens=2 * int(settings.dataset.max_new_tokens))
            deps.append(rewriter.key)
            runs_on = settings.dataset.defense_model
        out[t.dataset.key] = add(Node(kind="defense", name=t.dataset.name, spec=versioned(dspec),
                                      deps=tuple(dict.fromkeys(deps)), fn=stage, resources=resources(runs_on)))
    return out
