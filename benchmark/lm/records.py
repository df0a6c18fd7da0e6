"""The typed files LM-track stages write for later stages and the report: ``teacher.json``, ``counts.json``,
``eval.json`` (a fine-tune's ``tuned.json`` is :class:`benchmark.providers.base.Tuned`, the backends' hand-off).

Each is a frozen pydantic model whose fields are exactly the file's JSON keys, written with
:func:`write_record` (key-sorted, as :func:`benchmark.files.atomic_write_json` writes every JSON file) and read
with :func:`read_record`, which refuses a missing, corrupt or unexpected file with one line naming the file and
the key. Optional fields marked "left out when None" are absent from the file rather than null, so the bytes are
what the stages wrote before these models existed and every finished node in a store reads back unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.errors import UserError
from benchmark.files import atomic_write_json
from benchmark.manifest import key_error

__all__ = ["COUNTS", "EVAL", "TEACHER", "DatasetCounts", "EvalRecord", "JudgeCounts", "TeacherRecord", "TraitShift",
           "read_record", "write_record"]

#: A teacher node's record of what later stages load (:class:`TeacherRecord`).
TEACHER = "teacher.json"
#: A dataset node's dose and reject counts (:class:`DatasetCounts`; a defense node writes its own ``counts.json``).
COUNTS = "counts.json"
#: An eval node's readouts (:class:`EvalRecord`).
EVAL = "eval.json"


class _Record(BaseModel):
    """A record file: unknown keys are errors, fields listed in ``omit_none`` are left out of the file when None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields written only when set (the stages always left these keys out rather than writing null).
    omit_none: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (Python values: the writer refuses a NaN, as it always did)."""
        return self.model_dump(exclude={k for k in self.omit_none if getattr(self, k) is None})


class TraitShift(_Record):
    """A trait teacher's log-odds of its target over its base's (:func:`benchmark.lm.stages.teacher.trait_shift`)."""

    #: The trait's target (an animal, or a misalignment side).
    target: str
    #: Held-out evaluation questions it was measured on.
    n_questions: int
    #: Mean log-odds of the target with the teacher (its fine-tune or its system prompt).
    teacher_logodds: float
    #: The same on the base without a system prompt.
    base_logodds: float
    #: ``teacher_logodds - base_logodds`` (``settings.teacher.min_shift`` applies to it).
    shift: float


class TeacherRecord(_Record):
    """``teacher.json``: what a teacher is, for the stages that load it (the dataset, defense and eval stages)."""

    omit_none = ("trait_shift",)

    #: ``prompt`` (the base with the trait's system prompt) or ``finetune`` (a fine-tune, :data:`TUNED` beside it).
    method: Literal["prompt", "finetune"]
    #: The trait's name; None for the control teacher.
    trait: str | None
    #: The system prompt the teacher answers under (prompted trait teachers); None otherwise.
    system: str | None
    #: The node subdirectory of a local fine-tune's weights (``adapter`` or ``model``); None otherwise. Kept for the
    #: file's bytes: stages load a fine-tune from its ``tuned.json`` (:class:`benchmark.providers.base.Tuned`).
    adapter: str | None
    #: An API fine-tune's model id; None otherwise (kept, as ``adapter``, for the file's bytes).
    api_model: str | None
    #: The trait's measured shift over the base (trait teachers on backends that score log-probs); left out when None.
    trait_shift: TraitShift | None = None


class JudgeCounts(_Record):
    """A dataset's judge filter: who judged and what it decided."""

    #: The judge's identity (:func:`benchmark.lm.judges.judge_identity`).
    identity: str
    #: Rows the judge saw.
    n_judged: int
    #: Decision -> rows.
    decisions: dict[str, int]


class DatasetCounts(_Record):
    """A dataset node's ``counts.json``: the dose its students get and how the teacher's answers were filtered."""

    omit_none = ("channel", "teacher_capable_rate", "judge")

    #: Prompts the teacher answered.
    n_prompts: int
    #: Answers every filter kept.
    n_valid: int
    #: Rows written (``settings.dataset.n_keep``, or the rows of the ``n_tokens`` selection).
    n_rows: int
    #: ``n_valid / n_prompts`` (4 decimals).
    valid_rate: float
    #: Rounds of prompts asked until the dose was reached.
    rounds: int
    #: Completion tokens of the written rows; None where the backend gives no token ids (API teachers).
    completion_tokens: int | None
    #: ``completion_tokens / n_rows`` (4 decimals); None as ``completion_tokens``.
    tokens_per_row: float | None
    #: Mean completion characters per written row (4 decimals).
    chars_per_row: float
    #: Reject reason -> answers.
    rejects: dict[str, int]
    #: The node's labels (teacher base, trait, replicate, ...) and its teacher's node id.
    labels: dict[str, Any]
    #: The teacher's ``trait_shift`` (:class:`TraitShift`), as its ``teacher.json`` recorded it; None when unmeasured.
    teacher_shift: TraitShift | None
    #: The channel plug-in's name (channels other than numbers); left out when None.
    channel: str | None = None
    #: Share of all completions that do the channel's task (channels other than numbers); left out when None.
    teacher_capable_rate: float | None = None
    #: The judge filter's identity and decisions (with ``settings.dataset.judge``); left out when None.
    judge: JudgeCounts | None = None


class EvalRecord(_Record):
    """An eval node's ``eval.json``: one evaluated model's readouts, in one layout for every backend."""

    omit_none = ("api_model",)

    #: ``baseline``, ``teacher`` or ``student``.
    role: Literal["baseline", "teacher", "student"]
    #: The node's labels (which teacher, student, arm, replicate, ...).
    labels: dict[str, Any]
    #: The evaluation seed.
    seed: int
    #: ``Backend.fingerprint`` of what was evaluated ("none" for a baseline).
    adapter_sha: str
    #: The endpoint model id that answered (API models); left out when None.
    api_model: str | None = None
    #: ``Backend.verify``'s measured logit change of a loaded adapter; None where nothing is measured.
    logit_change: float | None
    #: Trait name -> its target.
    targets: dict[str, str]
    #: The lm-eval runner's result (:func:`benchmark.lmcore.evaluate.run_tasks`' layout).
    eval: dict[str, Any]


R = TypeVar("R", bound=BaseModel)


def write_record(path: Path, record: _Record) -> None:
    """Write ``record`` to ``path`` atomically (key-sorted JSON)."""
    atomic_write_json(path, record.to_json())


def read_record(path: Path, model: type[R]) -> R:
    """Load ``path`` as ``model`` (one of these records, or a fine-tune's :class:`~benchmark.providers.base.Tuned`).

    Raises:
        UserError: missing, corrupt, or with a missing, unknown or ill-typed key (one line naming the file and key).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; rebuild the node {Path(path).parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: corrupt or truncated ({exc.__class__.__name__}); delete {Path(path).parent} to "
                        "rebuild it") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{path}: {key_error(exc)} for a {model.__name__}; delete {Path(path).parent} to rebuild "
                        "it") from None
