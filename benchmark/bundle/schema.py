"""The results bundle: one schema-versioned JSON document per published suite (``results/suites/<name>/bundle.json``).

A bundle is what a researcher submits and what the leaderboard is built from. It holds everything needed to
check a result without the artifact store: the suite spec and the report node's resolved spec, the registry
entries of every model (revisions, weight hashes where known), the versions and git commit that produced it,
the per-replicate rows (the tidy table) and every statistic computed from them (the pair table, the shared-base
fit). The
statistics are recomputed from the rows by the same code (:mod:`benchmark.analysis`) when a bundle is validated.

Field names follow the Every Eval Ever schema (docs/research/field-2026.md, "Leaderboard conventions") where
they fit: ``source_metadata``, ``eval_library``, ``dedupe_identity``, ``model_info`` with ``inference_engine``,
``generation_config.generation_args``, ``metric_config``, ``score_details.uncertainty.confidence_interval`` and
``detailed_evaluation_results`` (the optional per-sample log beside the bundle).

The JSON Schema in ``schemas/bundle.schema.json`` is generated from these models
(``python -m benchmark.bundle --write``; a test keeps it in sync). :data:`BUNDLE_SCHEMA_VERSION` changes
whenever a field changes meaning or is removed; adding an optional field keeps it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BUNDLE_SCHEMA_VERSION",
    "CACHE_PREFIX",
    "Bundle",
    "CellResult",
    "ConfidenceInterval",
    "Data",
    "DedupeIdentity",
    "EvalLibrary",
    "GenerationConfig",
    "InferenceEngine",
    "MetricConfig",
    "ModelInfo",
    "Provenance",
    "SampleLog",
    "ScoreDetails",
    "SharedBase",
    "SourceMetadata",
    "SuiteInfo",
    "Table",
    "Uncertainty",
    "WeightsInfo",
    "json_schema",
]

#: Version of the bundle layout (see the module docstring). 2.0: the pair table (``pairs.csv``, one row per
#: teacher × student pair, issue 19) replaces the per-trait cells; ``shared_base`` is the primary γ.
BUNDLE_SCHEMA_VERSION: Final = "2.0"

Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    """Unknown keys are errors (a misspelt field must not pass silently); instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SourceMetadata(_Strict):
    """Who produced the results (Every Eval Ever ``source_metadata``)."""

    source_name: str = Field(description="Name of the benchmark that produced the results.")
    source_type: Literal["evaluation_run", "documentation"] = Field(
        description="evaluation_run: the numbers come from running the suite (the only kind this benchmark makes).")
    source_organization_name: str = Field(description="Who ran the suite (a person, lab or 'subliminal-bench').")
    source_organization_url: str | None = None
    evaluator_relationship: Literal["first_party", "third_party", "collaborative", "other"] = Field(
        description="Relation between the evaluator and the evaluated models' developers.")
    additional_details: dict[str, str] = Field(default_factory=dict)


class EvalLibrary(_Strict):
    """The evaluation code (Every Eval Ever ``eval_library``): this package and its version."""

    name: str
    version: str
    additional_details: dict[str, str] = Field(default_factory=dict)


class DedupeIdentity(_Strict):
    """Deterministic identifiers (Every Eval Ever ``dedupe_identity``).

    ``run_fingerprint`` is the full content hash of the report node (kind + resolved spec): two bundles with the
    same fingerprint come from the same experiment. ``content_hash`` is the sha256 of the canonical JSON of
    ``data``: it changes when any number does.
    """

    run_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash_algorithm: Literal["sha256"] = "sha256"
    canonicalization_version: str = Field(description="benchmark.hashing.HASH_VERSION the hashes were made with.")


class SuiteInfo(_Strict):
    """The suite as written (``spec``: the validated suite YAML) and as resolved (``report_spec``)."""

    name: str
    track: str
    description: str = ""
    spec: dict[str, Any] = Field(description="The suite file, validated (tasks/suites/<name>.yaml).")
    report_spec: dict[str, Any] = Field(
        description="The report node's resolved spec (ids of every evaluation it read, order, lineage, analysis).")
    report_id: str = Field(pattern=r"^[0-9a-f]{12}$", description="The report node's 12-hex id.")


class InferenceEngine(_Strict):
    """What ran the model (Every Eval Ever ``model_info.inference_engine``)."""

    name: str
    version: str | None = None


#: Prefix of a weights file in the model cache (``$SLBENCH_CACHE`` or ~/.cache/subliminal-bench), not the repository.
CACHE_PREFIX: Final = "$SLBENCH_CACHE/"


class WeightsInfo(_Strict):
    """The exact weights a model's results come from, where a file is known: the embedded zoo's committed build, or
    a model fetched with ``slbench models fetch`` (its converted checkpoint in the model cache)."""

    file: str = Field(description="Path relative to the repository, or '$SLBENCH_CACHE/models/<name>/<file>' for a "
                                  "fetched model (the model cache).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelInfo(_Strict):
    """One registry entry used by the suite (Every Eval Ever ``model_info`` plus its lineage and entry hash)."""

    name: str
    id: str = Field(description="Hub id, API model name or 'subliminal-bench/<name>' for models built by the suite.")
    family: str
    developer: str | None = None
    provider: str
    inference_platform: str | None = None
    inference_engine: InferenceEngine
    revision: str | None = None
    lineage_init: str
    lineage_parent: str | None = None
    roles: list[Literal["teacher", "student"]]
    entry: dict[str, Any] = Field(description="The registry entry as hashed into the suite's node ids.")
    entry_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="benchmark.hashing.content_hash of entry.")
    weights: WeightsInfo | None = None


class GenerationArgs(_Strict):
    """How the teachers wrote their datasets (Every Eval Ever ``generation_args``); None for the classifier track."""

    temperature: float | None = None
    top_k: int | None = Field(default=None, description="Teacher log-probs stored per token (soft labels).")
    max_tokens: int | None = None
    prompt_template: str | None = Field(default=None, description="The data channel (numbers, code, ...).")


class GenerationConfig(_Strict):
    """Every Eval Ever ``generation_config``."""

    generation_args: GenerationArgs | None = None
    additional_details: dict[str, str] = Field(default_factory=dict)


class MetricConfig(_Strict):
    """What a pair's score means (Every Eval Ever ``metric_config``)."""

    evaluation_description: str
    lower_is_better: bool
    score_type: Literal["continuous"] = "continuous"
    min_score: float | None = None
    max_score: float | None = None
    metric: str = Field(description="The readout the lift is computed on (logodds, rate, accuracy, ...).")
    additional_details: dict[str, str] = Field(default_factory=dict)


class ConfidenceInterval(_Strict):
    """Every Eval Ever ``uncertainty.confidence_interval`` (None bounds: not defined, e.g. one replicate)."""

    lower: float | None
    upper: float | None
    confidence_level: float = Field(ge=0, le=1)
    method: str


class Uncertainty(_Strict):
    """Every Eval Ever ``score_details.uncertainty``."""

    confidence_interval: ConfidenceInterval
    num_samples: int = Field(ge=0, description="The independent units behind the score (replicates or seeds).")


class ScoreDetails(_Strict):
    """A pair's score (its effect) with its uncertainty and tests (Every Eval Ever ``score_details``)."""

    score: float | None
    uncertainty: Uncertainty
    p_value: float | None = None
    q_value: float | None = Field(default=None, description="Benjamini-Hochberg within the row's family.")
    p_drift: float | None = Field(default=None, description=(
        "Same and sibling pairs: the test against the drift unrelated pairs show (the per-pair verdict's test)."))
    q_drift: float | None = Field(default=None, description="p_drift, Benjamini-Hochberg within the family.")


class CellResult(_Strict):
    """One pair of the transfer matrix (or one placebo row) as an Every Eval Ever ``evaluation_results`` item."""

    evaluation_name: str
    teacher: str
    student: str
    trait: str = Field(description="What the effect is about: the primary trait, or 'placebo:<trait>'.")
    relation: Literal["same", "sibling", "unrelated"]
    family: str | None = Field(default=None, description="The family q is adjusted within (placebo rows: placebo).")
    placebo: bool
    transfer_ratio: float | None = Field(default=None, description="Effect over the teachers' own contrast.")
    score_details: ScoreDetails


class SharedBase(_Strict):
    """γ, the extra effect of pairs whose teacher and student share an init: the primary claim (``fit.json``'s
    ``primary`` in brief; the full fit is in ``data.fit``)."""

    gamma: float | None
    uncertainty: Uncertainty
    p_value: float | None
    indicator: str
    method: str = Field(default="", description="How p and the CI were made.")
    leave_one_base_out_min: float | None = Field(default=None, description="Smallest γ without one base's rows.")
    leave_one_base_out_max: float | None = None
    placebo_rate: float | None = Field(default=None, description="Share of A/A placebo rows at p <= 0.05.")
    placebo_exact_size: float | None = Field(default=None, description=(
        "What placebo_rate should be: the per-pair test's real size at 0.05 (below 0.05 with few replicates)."))


class Table(_Strict):
    """A published CSV as columns and rows (values exactly as written: floats round-trip, null = empty)."""

    columns: list[str] = Field(min_length=1)
    rows: list[list[Scalar]]


class Data(_Strict):
    """The published analysis files, lossless: the per-replicate rows and everything computed from them."""

    replicate_rows: Table = Field(description="tidy.csv: one row per evaluated model and readout, with its replicate.")
    cells: Table = Field(description="pairs.csv: one row per teacher × student pair (and per placebo row).")
    matrix: Table = Field(description="matrix.csv: the pairs' effects, teacher × student.")
    fit: dict[str, Any] = Field(description="fit.json: the shared-base fit (NaN written as null).")
    tables: dict[str, Table] = Field(default_factory=dict, description="The track's other CSV files, by file name.")
    documents: dict[str, Any] = Field(default_factory=dict, description="The track's other JSON files, by file name.")


class Provenance(_Strict):
    """Where the numbers come from: the report node's manifest (git commit, versions, date) and its file hashes."""

    git_commit: str | None
    git_dirty: bool | None
    versions: dict[str, str] = Field(description="Package versions that can change results.")
    python: str
    platform: str
    started: str = Field(description="UTC start of the report node, ISO 8601.")
    wall_s: float
    manifest_schema: int
    files: dict[str, str] = Field(description="sha256 of every published file of the report node, by name.")


class SampleLog(_Strict):
    """An optional per-sample log beside the bundle (Every Eval Ever ``detailed_evaluation_results``)."""

    format: Literal["jsonl", "json"]
    file_path: str = Field(description="Relative to the bundle's directory.")
    hash_algorithm: Literal["sha256"] = "sha256"
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    total_rows: int = Field(ge=0)


class Bundle(_Strict):
    """A results bundle (see the module docstring)."""

    schema_version: Literal["2.0"] = Field(description="Bundle layout version.")
    evaluation_id: str = Field(description="<suite>/<report id>: unique per experiment.")
    evaluation_timestamp: str
    source_metadata: SourceMetadata
    eval_library: EvalLibrary
    dedupe_identity: DedupeIdentity
    suite: SuiteInfo
    models: list[ModelInfo] = Field(min_length=1)
    evaluator_versions: dict[str, str] = Field(
        description="Versions of the evaluation harness and the libraries that ran the models (pin the evaluator).")
    generation_config: GenerationConfig
    metric_config: MetricConfig
    evaluation_results: list[CellResult]
    shared_base: SharedBase
    provenance: Provenance
    data: Data
    detailed_evaluation_results: SampleLog | None = None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a bundle (what ``schemas/bundle.schema.json`` holds)."""
    doc = Bundle.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "subliminal-bench/bundle.schema.json",
            "version": BUNDLE_SCHEMA_VERSION, **doc}


def schema_text() -> str:
    """The schema file's text: pretty, key-sorted, one final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """``python -m benchmark.bundle [--write]``: print the bundle's JSON Schema, or write schemas/bundle.schema.json
    and the sweep summary's schemas/sweep.schema.json (:mod:`benchmark.bundle.sweep`)."""
    if argv[1:] == ["--write"]:
        from benchmark.bundle import sweep
        from benchmark.files import atomic_write_text, project_root

        for name, text in (("bundle.schema.json", schema_text()), ("sweep.schema.json", sweep.schema_text())):
            path = project_root() / "schemas" / name
            atomic_write_text(path, text)
            print(f"wrote {path}")
        return 0
    if argv[1:]:
        print("usage: python -m benchmark.bundle [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(schema_text())
    return 0
