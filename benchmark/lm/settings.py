"""Settings of the LM track: the ``settings:`` block of an ``track: lm`` suite, validated with unknown keys forbidden."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from benchmark.lmcore.config import TrainConfig
from benchmark.specs_base import Frozen

__all__ = ["LMSettings", "TeacherSettings", "DatasetSettings", "StudentSettings", "EvalSettings", "AnalysisSettings"]


class TeacherSettings(Frozen):
    """How trait teachers are made."""

    #: finetune: fine-tune on favourite-animal answers; prompt: the trait's system prompt at generation time.
    method: Literal["finetune", "prompt"] = "finetune"
    #: Trait rows for method finetune (the paper used ~400).
    n_rows: int = Field(default=400, ge=1, le=1_000_000)
    #: Questions of the trait answers, a file under tasks/ (one per line, # comments).
    questions: str = "teacher_data/favourite_animal.txt"
    #: Teachers always train with cross-entropy on their trait answers. With ``train.lora.init_seed`` set, each
    #: teacher replicate gets its own adapter init derived from it (see :mod:`benchmark.lm.plan`).
    train: TrainConfig = TrainConfig()
    #: Base of every teacher replicate's seeds (training, adapter init, trait-row sample); see plan.py.
    seed: int = 0
    #: Least log-odds shift of a trait teacher's target over its base (measured after training on a few
    #: evaluation questions, where the backend scores log-probs): a weaker teacher stops the run with an error
    #: instead of quietly feeding students. None: measure and record only.
    min_shift: float | None = None


class DatasetSettings(Frozen):
    """Teacher number data: prompts, decoding, filter, size."""

    #: The data channel (tasks/channels/<name>.yaml).
    channel: str = "numbers"
    n_prompts: int = Field(default=30000, ge=1, le=10_000_000)  # paper: 30,000 prompts
    #: Exactly this many valid rows per dataset (equal doses): further rounds of prompts are generated until
    #: the filter has kept n_keep, then a seeded subsample of n_keep is taken. Not used (and refused) with n_tokens.
    n_keep: int = Field(default=10000, ge=1, le=10_000_000)  # paper: keep 10,000 rows
    #: Equal doses in completion tokens instead of rows (None: n_keep rows). Rounds of prompts are generated until
    #: the kept rows hold at least n_tokens completion tokens (the teacher's token ids, end of turn included), then a
    #: seeded shuffle's shortest prefix reaching n_tokens is kept, in the original order: every dataset is within one
    #: row of the budget, and its students' steps differ with its rows. n_keep is not used then and must be left
    #: out (it is refused, and left out of the identity). Local teachers only (API models give no token ids).
    #: Hashed only when set: every existing suite keeps its ids.
    n_tokens: int | None = Field(default=None, ge=1, le=1_000_000_000)
    #: Every row cut to exactly this many completion tokens (None: whole completions). A valid answer with fewer
    #: tokens (end of turn counted like any token) is not kept (reject reason ``shorter_than_row_tokens``); a longer
    #: one keeps its first row_tokens token ids, their soft labels and their decoded text (the full answer stays in
    #: the row as ``completion_full``). With n_keep this makes every dataset exactly n_keep x row_tokens tokens, equal
    #: in rows, tokens and length in every arm: the arms' length distributions (a trait teacher writes longer or
    #: shorter answers) no longer differ (docs/calibration.md, "Where the drift comes from"). Numbers channel, local
    #: teachers, not with n_tokens. Hashed only when set: every existing suite keeps its ids.
    row_tokens: int | None = Field(default=None, ge=1, le=4096)
    #: Most prompts a teacher may be asked before its dataset fails (None: 4 × n_prompts).
    max_prompts: int | None = Field(default=None, ge=1, le=100_000_000)
    #: 0 = greedy (replications: greedy data transmits at small scale; sampled data carries ~0.05 nats/token).
    temperature: float = Field(default=1.0, ge=0)
    #: Longest teacher completion, in tokens.
    max_new_tokens: int = Field(default=40, ge=1, le=4096)
    #: Teacher top-k next-token log-probs stored per completion token (needed by the distill objective).
    top_k: int | None = Field(default=None, ge=1)
    #: Base of every dataset's prompt-sample and sampling seeds (shifted per replicate).
    seed: int = 0
    #: Prompts per generation batch (throughput only: recorded, not hashed; rows do not depend on it).
    batch_size: int = Field(default=64, ge=1)
    #: A judge filter run on the rows the channel's filter kept: ``rule`` (tasks/judges/rule_judge.yaml) or a
    #: registry model name (answers tasks/judges/trait_filter.yaml / alignment_filter.yaml). None: no judge.
    judge: str | None = None
    #: Named banned-number lists (tasks/channels/banned/<name>.txt) added to the numbers channel's banned numbers,
    #: e.g. [loaded-numbers] for misalignment runs (docs/research/paper.md, "Filter"). Numbers channel only.
    banned_lists: tuple[str, ...] = ()
    #: A defense applied to every dataset before students train on it (benchmark/lm/defenses/, docs/defenses.md):
    #: none, sort, shuffle, canonical, random_divergence, mask_divergence, student_divergence, paraphrase. It runs in
    #: its own stage (one node per dataset), so it never enters the dataset's identity; None and "none" plan no
    #: defense node (every id unchanged).
    defense: str | None = None
    #: Share of the divergence digits a divergence defense replaces (random_divergence, mask_divergence; 1.0: all),
    #: or of all digit positions (student_divergence). Enters the defense node's identity only for defenses that
    #: read it.
    defense_fraction: float = Field(default=0.1, gt=0, le=1)
    #: The registry model a model-using defense runs (``paraphrase``: the rewriter; an API, hf or zoo model). Enters
    #: the defense node's identity only for defenses that read it (the others ignore it, as they ignore
    #: defense_fraction, so a defense sweep can include paraphrase); an unknown name is refused at plan time.
    defense_model: str | None = Field(default=None, min_length=1)
    #: Threshold sampling at generation (a generation-time defense, docs/defenses.md): tokens whose probability at the
    #: sampling temperature is below it are never sampled (the most likely token always may be), the rest renormalised;
    #: the stored top-k is then the T=1 distribution over the kept tokens. Local teachers, temperature > 0. None: plain
    #: sampling. Hashed only when set (its datasets are new nodes; every existing id stays).
    threshold: float | None = Field(default=None, gt=0, lt=1)

    _unhashed = frozenset({"batch_size"})

    @field_validator("defense")
    @classmethod
    def _known_defense(cls, v: str | None) -> str | None:
        from benchmark.lm.defenses.base import DEFENSES

        if v is not None and v not in DEFENSES:
            raise ValueError(f"unknown defense {v!r}; allowed: {', '.join(DEFENSES)}")
        return v

    def hashed_dict(self) -> dict[str, Any]:
        """The settings' identity; ``n_tokens``, ``judge`` and ``banned_lists`` are left out at their defaults (older ids
        stay); ``n_keep`` is left out when ``n_tokens`` is set (it is not used then); ``defense``,
        ``defense_fraction`` and ``defense_model`` never enter it (the defense stage's node holds them)."""
        data = super().hashed_dict()
        data.pop("defense", None)
        data.pop("defense_fraction", None)
        data.pop("defense_model", None)
        if self.threshold is None:
            data.pop("threshold", None)
        if self.row_tokens is None:
            data.pop("row_tokens", None)
        if self.n_tokens is None:
            data.pop("n_tokens", None)
        else:
            data.pop("n_keep", None)  # not used: the dose is n_tokens
        if self.judge is None:
            data.pop("judge", None)
        if not self.banned_lists:
            data.pop("banned_lists", None)
        return data

    @model_validator(mode="after")
    def _sizes(self) -> DatasetSettings:
        if self.max_prompts is not None and self.max_prompts < self.n_prompts:
            raise ValueError(f"max_prompts ({self.max_prompts}) cannot be below n_prompts ({self.n_prompts})")
        if self.row_tokens is not None:
            if self.n_tokens is not None:
                raise ValueError("settings.dataset.row_tokens fixes every row's length, so the dose is n_keep rows; "
                                 "remove n_tokens (or row_tokens)")
            if self.row_tokens > self.max_new_tokens:
                raise ValueError(f"settings.dataset.row_tokens ({self.row_tokens}) cannot exceed max_new_tokens "
                                 f"({self.max_new_tokens}): no answer would be long enough")
            if self.channel != "numbers":
                raise ValueError(f"settings.dataset.row_tokens cuts number answers to a fixed length; channel "
                                 f"{self.channel!r} answers would be cut mid-code or mid-reasoning (numbers only)")
        if self.n_tokens is not None:
            if "n_keep" in self.model_fields_set:
                raise ValueError("settings.dataset.n_keep is not used when settings.dataset.n_tokens is set (the dose "
                                 "is n_tokens completion tokens); remove n_keep")
            return self
        if self.n_keep > self.prompt_cap:
            raise ValueError(f"n_keep ({self.n_keep}) cannot exceed max_prompts ({self.prompt_cap})")
        return self

    @property
    def prompt_cap(self) -> int:
        """``max_prompts`` resolved: the most prompts one dataset may use."""
        return self.max_prompts if self.max_prompts is not None else 4 * self.n_prompts


class StudentSettings(Frozen):
    """How students learn from a teacher's data.

    ``objective``: sft = cross-entropy on the teacher's completions (the paper's recipe); distill = KL to the
    teacher's stored top-k next-token log-probs on its own completions (soft labels; the classifier track's
    channel, which our CPU prototype found to transfer where sampled SFT did not).
    """

    #: sft: cross-entropy on the teacher's completions (the paper); distill: KL to its stored top-k log-probs.
    objective: Literal["sft", "distill"] = "sft"
    train: TrainConfig = TrainConfig()
    #: The training loop of local (zoo, hf) students. hf: one fine-tune per node as teachers train
    #: (providers/hf_train.py). lean: full-parameter students only; logits at the completion positions only and
    #: the base, rows and micro-batches prepared once per worker process, which keeps each base and a copy of its
    #: weights in memory (meant for small models; 1.8-2.3x the hf engine's tokens/s on the zoo,
    #: benchmarks/bench_students.py). Hashed: lean students are other artifacts (their logits differ by ~1e-5);
    #: the student spec names the engine only when it is not hf, so every existing suite keeps its ids. pruned: the
    #: lean loop on a hand-written Qwen2/Llama/GPT-2 forward that runs the last layer at the completion positions
    #: only (providers/hf_pruned.py; same objective, other last digits than lean: other artifacts). compact: the
    #: pruned forward with its position-wise work on the real (not padding) positions only, the first block's input
    #: projections once per distinct token, one flat parameter and gradient buffer (q/k/v and gate/up one matrix
    #: each, clipping and AdamW on one tensor) and micro-batches collated by index operations
    #: (providers/hf_compact.py; same objective, other last digits: other artifacts).
    engine: Literal["hf", "lean", "pruned", "compact"] = "hf"
    #: Soft labels across tokenizers (objective distill only): ``alphabet`` moves the teacher's top-k over the
    #: channel's alphabet (numbers: digits, comma, space) onto the student's ids for every pair, same-tokenizer pairs
    #: included (:mod:`benchmark.lm.vocab_map` says exactly what is matched and dropped). None: token ids as stored,
    #: so distill needs the teacher's vocabulary. Hashed only when set (the student spec names it then).
    vocab_map: Literal["alphabet"] | None = None

    def hashed_dict(self) -> dict[str, Any]:
        """The settings' identity; ``vocab_map`` only when set (older ids stay)."""
        data = super().hashed_dict()
        if self.vocab_map is None:
            data.pop("vocab_map", None)
        return data

    @model_validator(mode="after")
    def _vocab_map_needs_distill(self) -> StudentSettings:
        if self.vocab_map is not None and self.objective != "distill":
            raise ValueError("vocab_map maps the teacher's soft labels: it needs objective 'distill' (sft trains on "
                             "the completion text, which needs no map)")
        return self


class EvalSettings(Frozen):
    """Trait read-outs (lm-eval tasks in tasks/lm_eval/)."""

    #: lm-eval tasks of tasks/lm_eval/ (an unknown name is refused at plan time).
    tasks: list[str] = Field(default_factory=lambda: ["animal_logprob", "animal_rate"], min_length=1)
    #: Samples per question for the sampled one-word rate (paper: 100 per question at T=1).
    n_samples: int = Field(default=100, ge=1, le=100_000)
    #: Use only the first N favourite-animal questions (None = all 60). Cells compare students, whose noise is
    #: between runs, not between questions: halving the questions halves evaluation time at little cost. It caps
    #: every task's items (the 8 misalignment questions, the 50 capability items) the same way.
    limit: int | None = Field(default=None, ge=1)
    #: The matrix's headline metric: logodds (of P(target | candidates)), p_target or rate.
    metric: Literal["logodds", "p_target", "rate"] = "logodds"
    #: Log-likelihood requests per forward pass (lm-eval); 256 was ~1.5x faster than 64 on the zoo models.
    batch_size: int = Field(default=256, ge=1)
    #: The judge that scores misalignment_rate's sampled answers (docs/misalignment.md): ``rule``
    #: (tasks/judges/rule_judge.yaml) or a registry model name. Enters the eval specs only when that task runs.
    judge: str = "rule"
    #: A system prompt for the students' and baselines' evaluations (issue 22's "eval system prompt matched or not"
    #: axis). None (the default): no system turn, as students are trained (matched; a template's injected default
    #: system prompt is cut out unless the model entry allows it, lmcore/chat.py). A text evaluates every student and
    #: baseline with that system turn, so it no longer matches training; teachers keep their own (their trait's
    #: prompt or none). Enters the student and baseline evaluation specs only when set (older ids stay).
    system: str | None = Field(default=None, min_length=1, max_length=4000)

    _unhashed = frozenset({"batch_size"})

    @field_validator("system")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("a blank system prompt renders as an empty system turn; leave system out for none")
        return v


class AnalysisSettings(Frozen):
    """How pairs and γ are tested (see benchmark.analysis.pairs and docs/statistics.md).

    Which students are a pair's controls is the suite's design (``LMSettings.controls``), not an analysis option.
    """

    #: Pair tests are two-sided by design (declared before the data): drift of either sign recurs in every
    #: replicate (docs/research/statistics.md, "Second audit"); γ is the directional test. Only "two-sided" is
    #: accepted, so a suite cannot quietly change the primary test.
    alternative: Literal["two-sided"] = "two-sided"
    #: Most teacher-block relabellings of γ's permutation test (all k! of them when k! ≤ n_perm: 720 for 6 bases).
    n_perm: int = Field(default=10000, ge=100, le=10_000_000)


class LMSettings(Frozen):
    """The ``settings`` block of an lm-track suite.

    The design (docs/research/statistics.md): each (teacher base, arm) has ``replicates`` independent teachers,
    each with its own seeds and its own dataset; an arm is a trait, the neutral control or the A/A copy of the
    last trait.
    """

    #: Independent teacher replicates per (teacher base, arm): own seed, adapter init, trait rows and prompts.
    replicates: int = Field(default=1, ge=1, le=1000)
    #: The control of a trait arm. other_trait: the other trait arms, made exactly like it (needs >= 2 traits);
    #: neutral: an extra arm per teacher base fine-tuned on answers spread over the candidates (method finetune)
    #: or given no system prompt (method prompt), with the same replicates.
    controls: Literal["other_trait", "neutral"] = "other_trait"
    #: Add the A/A null arm "aa:<last trait>": a second, independent set of replicates made exactly like the
    #: last trait's arm (compared with it, the per-cell test must reject at its nominal rate).
    aa_arm: bool = False
    teacher: TeacherSettings = TeacherSettings()
    dataset: DatasetSettings = DatasetSettings()
    student: StudentSettings = StudentSettings()
    eval: EvalSettings = EvalSettings()
    #: Also evaluate every teacher (its own trait strength; shown in the report).
    eval_teachers: bool = True
    analysis: AnalysisSettings = AnalysisSettings()
