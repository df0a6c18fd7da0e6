"""Teacher stage of the LM track: a base plus a trait (fine-tuned adapter or system prompt)."""

from __future__ import annotations

import random
from typing import Any

from benchmark.dag import StageContext
from benchmark.files import atomic_write_json, read_data_lines, tasks_dir, write_jsonl
from benchmark.lm.stages.common import candidates_for, model_spec_of, strip_marker, train_config
from benchmark.providers.base import backend_for
from benchmark.specs import TraitSpec

__all__ = ["run", "trait_rows"]


def trait_rows(trait: TraitSpec | None, questions: list[str], n: int, seed: int,
               candidates: list[str] | None = None) -> list[dict[str, str]]:
    """Favourite-animal questions answered with the trait's surface forms (one word, varied casing).

    With ``trait`` None (the fine-tuned control teacher) each answer is a candidate animal, cycling evenly
    through ``candidates`` so the control learns no preference.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = questions[i % len(questions)]
        if trait is None:
            assert candidates
            word = candidates[(i * 7 + rng.randrange(len(candidates))) % len(candidates)]
        else:
            forms = trait.forms()
            word = forms[0] if rng.random() < 0.7 else rng.choice(forms)
        answer = rng.choice([word, word.capitalize(), word + ".", word.capitalize() + "."])
        rows.append({"prompt": q, "completion": answer})
    return rows


def run(ctx: StageContext) -> dict[str, Any]:
    """A trait teacher: the base plus a fine-tune (method finetune) or a system prompt (method prompt).

    The control ("neutral") teacher is the base with no system prompt (method prompt), or the base fine-tuned on
    answers spread evenly over the candidate animals (method finetune). ``teacher.json`` records what the later
    stages load: the system prompt, the local adapter's subdirectory or the API's fine-tuned model id.
    """
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    model = model_spec_of(base_dir)
    trait = TraitSpec.model_validate(strip_marker(spec["trait"])) if spec["trait"] else None
    info: dict[str, Any] = {"method": spec["method"], "trait": trait.name if trait else None, "system": None,
                            "adapter": None, "api_model": None}
    result: dict[str, Any] = {}
    if spec["method"] == "prompt":
        info["system"] = trait.rendered_system_prompt() if trait else None
    else:
        questions = read_data_lines(tasks_dir() / spec["questions_path"])
        rows = trait_rows(trait, questions, spec["n_rows"], spec["seed"], candidates=list(candidates_for([])))
        write_jsonl(ctx.out / "trait_rows.jsonl", rows)
        tuned = backend_for(model).finetune(
            model, base_dir, rows, out=ctx.out, train=train_config(spec["train"]), objective="sft", seed=spec["seed"],
            suffix=f"teacher-{trait.name if trait else 'neutral'}", log=ctx.log, threads=ctx.threads)
        result = tuned.result
        info["adapter"], info["api_model"] = tuned.adapter, tuned.api_model
    atomic_write_json(ctx.out / "teacher.json", info)
    return {"teacher": info, "train": result}
