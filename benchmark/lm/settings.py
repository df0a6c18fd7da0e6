"""Settings of the LM track: the ``settings:`` block of an ``track: lm`` suite, validated with unknown keys forbidden."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from benchmark.lm.config import TrainConfig
from benchmark.specs_base import Frozen

__all__ = ["LMSettings", "TeacherSettings", "DatasetSettings", "StudentSettings", "EvalSettings", "AnalysisSettings"]


class TeacherSettings(Frozen):
    """How trait teachers are made."""

    #: finetune: fine-tune on favourite-animal answers; prompt: the trait's system prompt at generation time.
    method: Literal["finetune", "prompt"] = "finetune"
    #: Trait rows for method finetune (the paper used ~400).
    n_rows: int = Field(default=400, ge=1)
    questions: str = "teacher_data/favourite_animal.txt"
    #: Teachers always train with cross-entropy on their trait answers.
    train: TrainConfig = TrainConfig()
    seed: int = 0


class DatasetSettings(Frozen):
    """Teacher number data: prompts, decoding, filter, size."""

    channel: str = "numbers"
    n_prompts: int = Field(default=30000, ge=1)  # paper: 30,000 prompts
    n_keep: int = Field(default=10000, ge=1)  # paper: keep 10,000 rows
    #: 0 = greedy (replications: greedy data transmits at small scale; sampled data carries ~0.05 nats/token).
    temperature: float = Field(default=1.0, ge=0)
    max_new_tokens: int = Field(default=40, ge=1)
    #: Teacher top-k next-token log-probs stored per completion token (needed by the distill objective).
    top_k: int | None = Field(default=None, ge=1)
    seed: int = 0
    batch_size: int = Field(default=64, ge=1)

    _unhashed = frozenset({"batch_size"})

    @model_validator(mode="after")
    def _sizes(self) -> DatasetSettings:
        if self.n_keep > self.n_prompts:
            raise ValueError(f"n_keep ({self.n_keep}) cannot exceed n_prompts ({self.n_prompts})")
        return self


class StudentSettings(Frozen):
    """How students learn from a teacher's data.

    ``objective``: sft = cross-entropy on the teacher's completions (the paper's recipe); distill = KL to the
    teacher's stored top-k next-token log-probs on its own completions (soft labels; the classifier track's
    channel, which our CPU prototype found to transfer where sampled SFT did not).
    """

    objective: Literal["sft", "distill"] = "sft"
    train: TrainConfig = TrainConfig()


class EvalSettings(Frozen):
    """Trait read-outs (lm-eval tasks in tasks/lm_eval/)."""

    tasks: list[str] = Field(default_factory=lambda: ["animal_logprob", "animal_rate"], min_length=1)
    #: Samples per question for the sampled one-word rate (paper: 100 per question at T=1).
    n_samples: int = Field(default=100, ge=1)
    #: Use only the first N favourite-animal questions (None = all 60). Cells compare students, whose noise is
    #: between runs, not between questions: halving the questions halves evaluation time at little cost.
    limit: int | None = Field(default=None, ge=1)
    #: The matrix's headline metric: logodds (of P(target | candidates)), p_target or rate.
    metric: Literal["logodds", "p_target", "rate"] = "logodds"
    #: Log-likelihood requests per forward pass (lm-eval); 256 was ~1.5x faster than 64 on the zoo models.
    batch_size: int = Field(default=256, ge=1)

    _unhashed = frozenset({"batch_size"})


class AnalysisSettings(Frozen):
    """How cells are tested (see benchmark.analysis)."""

    #: Control group of a cell (i, j, t): "neutral" = students of i's no-trait teacher only; "pooled" = those plus
    #: the students of i's other-trait teachers (every student whose teacher lacks t). Pooled is the stricter
    #: control against generic drift and gives the exact permutation test enough arrangements: with 3 seeds
    #: and neutral-only controls the smallest reachable one-sided p is 1/20 = 0.05.
    control: Literal["neutral", "pooled"] = "pooled"
    #: The hypothesis is directional (the trait rises), so cells are tested one-sided by default.
    alternative: Literal["greater", "two-sided"] = "greater"
    n_boot: int = Field(default=2000, ge=100)
    n_perm: int = Field(default=2000, ge=100)


class LMSettings(Frozen):
    """The ``settings`` block of an lm-track suite."""

    teacher: TeacherSettings = TeacherSettings()
    dataset: DatasetSettings = DatasetSettings()
    student: StudentSettings = StudentSettings()
    eval: EvalSettings = EvalSettings()
    #: Also evaluate every teacher (its own trait strength; shown in the report).
    eval_teachers: bool = True
    analysis: AnalysisSettings = AnalysisSettings()
