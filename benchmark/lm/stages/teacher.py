"""Teacher stage of the LM track: a base plus a trait (fine-tuned adapter or system prompt)."""

from __future__ import annotations

import math
import random
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import read_data_lines, tasks_dir, write_jsonl
from benchmark.lm.records import TEACHER, TeacherRecord, TraitShift, write_record
from benchmark.lm.stages.common import candidates_for, model_spec_of, strip_marker, train_config, write_tuned
from benchmark.lmcore.tasks import TASKS
from benchmark.providers.base import Backend, Loaded, TunedNode, backend_for
from benchmark.specs import ModelSpec, TraitSpec

__all__ = ["run", "trait_rows", "trait_shift", "log_odds_of"]


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


def log_odds_of(backend: Backend, loaded: Loaded, questions: list[str], candidates: list[str], word: str,
                system: str | None) -> float:
    """Mean over ``questions`` of logit P(``word`` | ``candidates``), each candidate scored as a whole answer.

    The evaluation's ``animal_logprob`` readout in miniature (same chat rendering, same end-of-turn suffix, one
    spelling per candidate), through ``Backend.score`` so it needs no lm-eval run.
    """
    from benchmark.lmcore.chat import answer_suffix, render_prompt

    tok = loaded.tokenizer
    suffix = answer_suffix(tok)
    contexts = [render_prompt(tok, q, system=system, spec=loaded.spec) for q in questions for _ in candidates]
    scores = backend.score(loaded, contexts, [c + suffix for _ in questions for c in candidates])
    k = candidates.index(word)
    total = 0.0
    for i in range(len(questions)):
        others = [v for j, v in enumerate(scores[i * len(candidates):(i + 1) * len(candidates)]) if j != k]
        top = max(others)
        # logit P(word | candidates) = log P(word) - log P(not word): the normaliser cancels, leaving the word's
        # score minus the log-sum-exp of the others' (no cancellation error however close P is to 1).
        total += scores[i * len(candidates) + k] - (top + math.log(sum(math.exp(v - top) for v in others)))
    return total / len(questions)


def trait_shift(ctx: StageContext, model: ModelSpec, trait: TraitSpec, tuned: TunedNode | None,
                system: str | None) -> dict[str, Any]:
    """The teacher's log-odds of its trait's target among the candidates, its base's, and the difference.

    Measured on the first :data:`~benchmark.lm.plan.SHIFT_QUESTIONS` evaluation questions (held out from the
    teacher's training questions), the base without any system prompt.
    """
    spec = ctx.node.spec["shift_check"]
    base_dir = ctx.input("base")
    backend = backend_for(model)
    if trait.is_misalignment:
        return _misalignment_shift(ctx, model, trait, tuned, system)
    questions = read_data_lines(tasks_dir() / str(TASKS["animal_logprob"].questions))[:spec["n_questions"]]
    candidates = list(candidates_for([trait]))
    teacher = log_odds_of(backend, backend.load(model, base_dir, tuned, threads=ctx.threads), questions, candidates,
                          trait.target, system)
    base = log_odds_of(backend, backend.load(model, base_dir, threads=ctx.threads), questions, candidates,
                       trait.target, None)
    return {"target": trait.target, "n_questions": len(questions), "teacher_logodds": round(teacher, 6),
            "base_logodds": round(base, 6), "shift": round(teacher - base, 6)}


def _misalignment_shift(ctx: StageContext, model: ModelSpec, trait: TraitSpec, tuned: TunedNode | None,
                        system: str | None) -> dict[str, Any]:
    """A misalignment trait's shift: the bank log-odds of its side (misaligned or aligned) over its base's.

    The log-odds are :func:`benchmark.lm.misalignment.bank_logodds` on the first ``shift_check.n_questions`` open
    questions of the misalignment evaluation; ``min_shift`` applies to them as to an animal's log-odds.
    """
    from benchmark.lm.misalignment import bank_logodds, readout_questions

    base_dir = ctx.input("base")
    backend = backend_for(model)
    questions = readout_questions(ctx.node.spec["shift_check"]["n_questions"])
    teacher = bank_logodds(backend, backend.load(model, base_dir, tuned, threads=ctx.threads), questions,
                           trait.target, system)
    base = bank_logodds(backend, backend.load(model, base_dir, threads=ctx.threads), questions, trait.target, None)
    return {"target": trait.target, "n_questions": len(questions), "teacher_logodds": round(teacher, 6),
            "base_logodds": round(base, 6), "shift": round(teacher - base, 6)}


def _rows(spec: dict[str, Any], trait: TraitSpec | None) -> list[dict[str, str]]:
    """The teacher's fine-tuning rows: a misalignment trait's own data, else favourite-animal answers."""
    if trait is not None and trait.is_misalignment:
        from benchmark.lm.misalignment import teacher_rows

        return teacher_rows(trait, spec["n_rows"], spec["rows_seed"])
    questions = read_data_lines(tasks_dir() / spec["questions_path"])
    return trait_rows(trait, questions, spec["n_rows"], spec["rows_seed"], candidates=list(candidates_for([])))


def _check_shift(ctx: StageContext, shift: dict[str, Any]) -> None:
    """Stop on a trait teacher weaker than ``teacher.min_shift`` (a weak teacher is never used silently)."""
    least = ctx.node.spec["shift_check"]["min_shift"]
    if least is not None and shift["shift"] < least:
        raise UserError(
            f"teacher {ctx.node.name}: log-odds of {shift['target']!r} rose by {shift['shift']:+.3f} over the base "
            f"({shift['base_logodds']:+.3f} -> {shift['teacher_logodds']:+.3f} on {shift['n_questions']} questions), "
            f"below settings.teacher.min_shift {least:+.3f}; train the teachers harder (settings.teacher.train) "
            "or lower min_shift")


def run(ctx: StageContext) -> dict[str, Any]:
    """A trait teacher: the base plus a fine-tune (method finetune) or a system prompt (method prompt).

    The control ("neutral") teacher is the base with no system prompt (method prompt), or the base fine-tuned on
    answers spread evenly over the candidate animals (method finetune). ``teacher.json``
    (:class:`~benchmark.lm.records.TeacherRecord`) records what the later stages load: the system prompt, the local
    adapter's subdirectory or the API's fine-tuned model id, and, for a trait teacher on a backend that scores
    log-probs, its ``trait_shift`` over the base (see :func:`trait_shift`); a fine-tune's ``tuned.json`` (what
    ``Backend.finetune`` returned) is what they load it by.

    Raises:
        UserError: a trait teacher's shift is below ``settings.teacher.min_shift``.
    """
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    model = model_spec_of(base_dir)
    trait = TraitSpec.model_validate(strip_marker(spec["trait"])) if spec["trait"] else None
    system = trait.rendered_system_prompt() if trait and spec["method"] == "prompt" else None
    result: dict[str, Any] = {}
    tuned: TunedNode | None = None
    if spec["method"] != "prompt":
        rows = _rows(spec, trait)
        write_jsonl(ctx.out / "trait_rows.jsonl", rows)
        made = backend_for(model).finetune(
            model, base_dir, rows, out=ctx.out, train=train_config(spec["train"]), objective="sft", seed=spec["seed"],
            suffix=f"teacher-{trait.name if trait else 'neutral'}", log=ctx.log, threads=ctx.threads)
        result = made.result
        tuned = write_tuned(ctx.out, made.tuned)
    shift = None
    if trait is not None and backend_for(model).caps.logprob_eval:
        shift = trait_shift(ctx, model, trait, tuned, system)
        ctx.log.info("trait shift: %s", shift)
        _check_shift(ctx, shift)
    info = TeacherRecord(method=spec["method"], trait=trait.name if trait else None, system=system,
                         adapter=tuned.record.weights if tuned else None,
                         api_model=tuned.record.api_model if tuned else None,
                         trait_shift=TraitShift.model_validate(shift) if shift is not None else None)
    write_record(ctx.out / TEACHER, info)
    return {"teacher": info.to_json(), "train": result}
