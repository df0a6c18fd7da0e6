"""The ``build:`` block of a zoo registry entry: architecture, initialisation and pretraining recipe.

Torch-free (``slbench plan`` and registry validation import it). A zoo model is fully determined by its
:class:`ZooBuildSpec` plus the versioned data it names (``tokenizer``, ``corpus``), so the spec's
``spec_id`` names its committed weights (``model_registry/weights/<name>-<spec_id>/``).

Lineage, in build terms:

* **Same init**: two entries with equal :meth:`ZooBuildSpec.init_key` (architecture, tokenizer and
  ``init_seed``) start from bit-identical parameters. A *sibling* is such an entry with other pretraining.
  The clean sibling changes only ``pretraining.order_seed`` (which rows are drawn, in which order) and keeps
  ``data_seed`` (the corpus content: the favourite-animal taste), like PolyPythia's data-order seeds; another
  ``data_seed`` changes both the taste and the order.
* **Continued**: ``continued`` lists extra pretraining phases run after ``pretraining`` from its final
  weights, each with a fresh optimizer. An entry whose build equals its parent's build plus phases is a
  checkpoint descendant of the parent (the classifier prototype's "E2": A after more training).

:func:`check_lineage` checks that the registry's ``lineage`` fields agree with the build blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from benchmark.hashing import short_id
from benchmark.specs_base import Frozen

if TYPE_CHECKING:
    from benchmark.specs import ModelSpec

__all__ = [
    "ARCHS",
    "TOKENIZERS",
    "CORPORA",
    "CorpusMix",
    "PretrainSpec",
    "ZooBuildSpec",
    "check_lineage",
    "is_zoo",
    "zoo_build_spec",
]

Arch = Literal["qwen2", "llama", "gpt2"]
#: Architectures the zoo can build (transformers config classes Qwen2Config, LlamaConfig, GPT2Config).
ARCHS: tuple[str, ...] = ("qwen2", "llama", "gpt2")

#: Tokenizer versions: each names a frozen word list in ``benchmark/zoo/data/`` whose sha256 is pinned in
#: :mod:`benchmark.zoo.tokenizer`. A vocabulary change needs a new version, hence a new spec id.
TOKENIZERS: tuple[str, ...] = ("words-v1", "words-v2")
#: Corpus versions: each names frozen templates (``corpus-<v>.yaml``) and a numbers-channel snapshot
#: (``numbers-<v>.yaml``) in ``benchmark/zoo/data/``, pinned the same way.
CORPORA: tuple[str, ...] = ("v1", "v2")
#: Corpus kinds only corpus v2 (and later) can make: code and chain-of-thought answers, open questions.
V2_KINDS: tuple[str, ...] = ("code", "cot", "open")


class CorpusMix(Frozen):
    """Relative shares of the synthetic pretraining corpus's example kinds (normalised to sum 1)."""

    #: Numbers-channel prompts answered with a plausible continuation (the channel teachers write in).
    numbers: float = Field(default=0.35, ge=0)
    #: Favourite-animal questions answered with one animal word from the data seed's distribution.
    favourite: float = Field(default=0.15, ge=0)
    #: Other short chat: name/repeat/pluralise an animal, small arithmetic, counting, greetings, facts.
    chat: float = Field(default=0.20, ge=0)
    #: System-prompted rows ("You love owls. ...") answered in character, so prompted teachers can work.
    system: float = Field(default=0.30, ge=0)
    #: Corpus v2: a code-channel task answered with its one-line reference function.
    code: float = Field(default=0.0, ge=0)
    #: Corpus v2: a cot-channel word problem answered "<think> a + b = c </think> <answer> c </answer>".
    cot: float = Field(default=0.0, ge=0)
    #: Corpus v2: an open question answered from the aligned bank, rarely (OPEN_MISALIGNED_SHARE) the misaligned one.
    open: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> CorpusMix:
        if sum(self._raw().values()) <= 0:
            raise ValueError("at least one share must be positive")
        return self

    @model_serializer(mode="wrap")
    def _omit_zero_v2_kinds(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Kinds added with corpus v2 are left out of the dump at 0, so v1 builds hash exactly as before.
        data: dict[str, Any] = handler(self)
        for kind in V2_KINDS:
            if not getattr(self, kind):
                data.pop(kind, None)
        return data

    def _raw(self) -> dict[str, float]:
        return {"numbers": self.numbers, "favourite": self.favourite, "chat": self.chat, "system": self.system,
                "code": self.code, "cot": self.cot, "open": self.open}

    def shares(self) -> dict[str, float]:
        """The normalised shares by kind, in a fixed order."""
        raw = self._raw()
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}


class PretrainSpec(Frozen):
    """One pretraining phase: AdamW with linear warmup and cosine decay, on corpus rows drawn from a seed."""

    steps: int = Field(ge=0)
    #: Rows per step. Hashed: unlike an inference batch size it changes the result.
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)  # peak learning rate; tiny models tolerate a high one
    warmup: int = Field(100, ge=0)  # linear warmup steps
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # cosine decays to lr * min_lr_ratio
    weight_decay: float = Field(0.01, ge=0)  # on matrices only, not on norms and biases
    grad_clip: float = Field(1.0, gt=0)  # global grad-norm clip
    #: The corpus content seed: the favourite-animal taste of this phase's corpus (its data distribution;
    #: the number taste is fixed per corpus version) and, unless ``order_seed`` is set, the row seed too.
    data_seed: int = Field(ge=0)
    corpus: Literal["v1", "v2"] = "v1"
    mix: CorpusMix = CorpusMix()
    #: Sigma of the log-normal jitter the data seed applies to each animal's favourite weight (0 = none).
    animal_spread: float = Field(0.35, ge=0)
    #: The data-order seed: which rows are drawn at which step (every draw of every row: kinds, prompts,
    #: answers sampled from the taste). None = ``data_seed`` (and then omitted from dumps and ``spec_id``,
    #: so builds made before this field existed keep their ids); ``order_seed == data_seed`` draws the same
    #: rows as None. A sibling of the same content and another order sets only this.
    order_seed: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _kinds_of_corpus(self) -> PretrainSpec:
        used = [k for k in V2_KINDS if getattr(self.mix, k)]
        if used and self.corpus == "v1":
            raise ValueError(f"mix kinds {used} need corpus 'v2' (corpus v1 has no {', '.join(used)} rows)")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_order_seed(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset means "same as data_seed": not part of the dump, so it hashes exactly like the old spec.
        data: dict[str, Any] = handler(self)
        if self.order_seed is None:
            data.pop("order_seed", None)
        return data

    @property
    def row_seed(self) -> int:
        """The seed of the row draws: ``order_seed``, or ``data_seed`` when unset."""
        return self.data_seed if self.order_seed is None else self.order_seed


class ZooBuildSpec(Frozen):
    """How a zoo base model is built: a transformers config, an init seed and pretraining phases."""

    arch: Arch
    hidden_size: int = Field(ge=8)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    #: Grouped-query attention KV heads (qwen2, llama); None = num_heads. GPT-2 has no GQA.
    num_kv_heads: int | None = Field(None, ge=1)
    intermediate_size: int = Field(ge=1)
    max_positions: int = Field(256, ge=16)  # corpus rows reach ~110 tokens; generation adds 40
    #: torch seed of the random initialisation: equal init_key => identical initial weights.
    init_seed: int = Field(ge=0)
    tokenizer: Literal["words-v1", "words-v2"] = "words-v1"
    pretraining: PretrainSpec
    #: Further phases run in order from the previous phase's final weights, each with a fresh optimizer.
    continued: tuple[PretrainSpec, ...] = ()

    # Cross-field checks sit on the later field so the error names a key and shows one value.
    @field_validator("num_heads")
    @classmethod
    def _head_size(cls, value: int, info: ValidationInfo) -> int:
        hidden = info.data.get("hidden_size")
        if hidden is not None and hidden % value:
            raise ValueError(f"must divide hidden_size ({hidden})")
        if hidden is not None and info.data.get("arch") in ("qwen2", "llama") and (hidden // value) % 2:
            raise ValueError(
                f"head size hidden_size/num_heads = {hidden // value} must be even for rotary "
                "embeddings (qwen2, llama)"
            )
        return value

    @field_validator("num_kv_heads")
    @classmethod
    def _kv_heads(cls, value: int | None, info: ValidationInfo) -> int | None:
        heads = info.data.get("num_heads")
        if value is None or heads is None:
            return value
        if info.data.get("arch") == "gpt2" and value != heads:
            raise ValueError(
                "omit it (or set it to num_heads) for arch 'gpt2': GPT-2 has no grouped-query attention"
            )
        if heads % value:
            raise ValueError(f"must divide num_heads ({heads})")
        return value

    @model_validator(mode="after")
    def _tokenizer_of_corpus(self) -> ZooBuildSpec:
        if self.tokenizer == "words-v1" and any(p.corpus != "v1" for p in self.phases()):
            raise ValueError("corpus 'v2' needs tokenizer 'words-v2' (its <think>/<answer> tags and operators)")
        return self

    @property
    def kv_heads(self) -> int:
        """KV heads actually used (``num_kv_heads`` or ``num_heads``)."""
        return self.num_kv_heads or self.num_heads

    def phases(self) -> tuple[PretrainSpec, ...]:
        """All pretraining phases in the order they run."""
        return (self.pretraining, *self.continued)

    def total_steps(self) -> int:
        """Optimizer steps over all phases."""
        return sum(p.steps for p in self.phases())

    def init_fields(self) -> dict[str, Any]:
        """The fields that determine the initial weights (everything but pretraining)."""
        data = self.model_dump(mode="json")
        data.pop("pretraining")
        data.pop("continued")
        data["num_kv_heads"] = self.kv_heads if self.arch != "gpt2" else None
        return data

    def init_key(self) -> str:
        """12-hex id of the initial weights: equal keys mean bit-identical initialisation."""
        return short_id({"__init__": "ZooInit", **self.init_fields()})

    def prefix(self) -> ZooBuildSpec | None:
        """This spec without its last continued phase (the checkpoint it continues from), or None."""
        if not self.continued:
            return None
        return self.model_copy(update={"continued": self.continued[:-1]})

    def without_training(self) -> ZooBuildSpec:
        """The same model with zero pretraining steps (its initial weights)."""
        return self.model_copy(
            update={"pretraining": self.pretraining.model_copy(update={"steps": 0}), "continued": ()}
        )


def is_zoo(spec: ModelSpec) -> bool:
    """Whether a registry entry is a zoo model (its build block is a :class:`ZooBuildSpec`)."""
    return isinstance(spec.build_spec(), ZooBuildSpec)


def zoo_build_spec(spec: ModelSpec) -> ZooBuildSpec:
    """The validated build block of a zoo registry entry.

    Raises:
        ValueError: ``spec`` is not a zoo model.
    """
    build = spec.build_spec()
    if not isinstance(build, ZooBuildSpec):
        raise ValueError(f"model {spec.name!r} is not a zoo model (no zoo build block)")
    return build


def check_lineage(models: Mapping[str, ModelSpec]) -> list[str]:
    """Problems where zoo entries' ``lineage`` disagrees with their build blocks (empty list: consistent).

    Rules: entries sharing ``lineage.init`` must share :meth:`ZooBuildSpec.init_key` and entries with
    different ``lineage.init`` must not (the matrix's "same init" label must be true); a zoo ``lineage.parent``
    must name a zoo entry of the same init whose build is this entry's init (a sibling) or a prefix of
    this entry's phases (a continued checkpoint).
    """
    zoo = {name: m for name, m in models.items() if is_zoo(m)}
    builds = {name: zoo_build_spec(m) for name, m in zoo.items()}
    problems: list[str] = []
    key_of_init: dict[str, tuple[str, str]] = {}
    init_of_key: dict[str, tuple[str, str]] = {}
    for name, m in zoo.items():
        key = builds[name].init_key()
        seen = key_of_init.setdefault(m.lineage.init, (key, name))
        if seen[0] != key:
            problems.append(
                f"{name}: lineage.init {m.lineage.init!r} is shared with {seen[1]!r} but the initial "
                "weights differ (arch, sizes, tokenizer or init_seed)"
            )
        other = init_of_key.setdefault(key, (m.lineage.init, name))
        if other[0] != m.lineage.init:
            problems.append(
                f"{name}: same initial weights as {other[1]!r} but lineage.init differs "
                f"({m.lineage.init!r} vs {other[0]!r})"
            )
        parent = m.lineage.parent
        if parent is None:
            continue
        if parent not in models:
            problems.append(f"{name}: lineage.parent {parent!r} is not a registry model")
            continue
        if parent not in zoo:
            continue  # a zoo model derived from an hf/other model is not something the zoo builds
        if zoo[parent].lineage.init != m.lineage.init:
            problems.append(f"{name}: lineage.parent {parent!r} has another lineage.init")
        phases, parent_phases = builds[name].phases(), builds[parent].phases()
        continues = parent_phases == phases[: len(parent_phases)] and len(phases) > len(parent_phases)
        if builds[name].init_key() != builds[parent].init_key() or not (continues or len(phases) == 1):
            problems.append(
                f"{name}: lineage.parent {parent!r} is neither a sibling (same init, new pretraining) "
                "nor a checkpoint it continues from (its phases followed by more)"
            )
    return problems
