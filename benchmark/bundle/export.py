"""Export a published suite (or a finished report node) as a results bundle.

The input is a directory holding a report node's ``manifest.json`` and its analysis files: a published
``results/suites/<name>/`` or the store's report node at publish time. The store is not needed; the registry and
``tasks/`` supply the suite file and the model entries. Exporting twice gives the same bytes (nothing in a bundle
depends on when or where it was exported), so publishing an unchanged suite leaves the git tree clean.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmark.bundle.eee import EEE_DIR, eee_files
from benchmark.bundle.schema import (
    BUNDLE_SCHEMA_VERSION,
    CACHE_PREFIX,
    Bundle,
    CellResult,
    ConfidenceInterval,
    Data,
    DedupeIdentity,
    EvalLibrary,
    GenerationArgs,
    GenerationConfig,
    InferenceEngine,
    MetricConfig,
    ModelInfo,
    Provenance,
    SampleLog,
    ScoreDetails,
    SharedBase,
    SourceMetadata,
    SuiteInfo,
    Table,
    Uncertainty,
    WeightsInfo,
)
from benchmark.bundle.tables import document_sha256s, frame_of, read_table, render_csv
from benchmark.bundle.tracks import CellColumns, TrackInfo, check_columns, track_info
from benchmark.errors import UserError
from benchmark.hashing import HASH_VERSION, content_hash
from benchmark.manifest import MANIFEST, Manifest, read_manifest
from benchmark.providers.base import requirements

if TYPE_CHECKING:
    from benchmark.registry import Registry

__all__ = ["BUNDLE", "SAMPLES", "bundle_bytes", "cell_results", "derived_files", "dump_json", "export_bundle",
           "make_bundle", "sample_log", "shared_base"]

#: File name of a bundle beside its published suite.
BUNDLE = "bundle.json"
#: The analysis files every track writes, by their field in :class:`~benchmark.bundle.schema.Data`.
_CORE_FILES = {"replicate_rows": "tidy.csv", "cells": "pairs.csv", "matrix": "matrix.csv"}
#: Files of a report directory that are not analysis data (renders, records).
_NOT_DATA = frozenset({MANIFEST, "spec.json", BUNDLE, "log.txt"})
#: Packages whose versions pin the evaluator (the Open LLM Leaderboard's lesson: a harness change moves scores).
_EVALUATOR_PACKAGES = ("subliminal-bench", "lm_eval", "transformers", "torch", "peft", "numpy", "pandas", "scipy")
#: Level of every CI the analysis reports (Welch, t and percentile-bootstrap intervals are all 95 %).
CONFIDENCE_LEVEL = 0.95


def export_bundle(directory: Path, *, suite_spec: Any = None, registry: Registry | None = None,
                  organization: str = "subliminal-bench") -> Bundle:
    """The bundle of the report files in ``directory``.

    Args:
        directory: A published suite folder or a finished report node directory.
        suite_spec: The :class:`~benchmark.specs.SuiteSpec` that was run (default: ``tasks/suites/<name>.yaml``).
        registry: The :class:`~benchmark.registry.Registry` holding its models (default: the project's).
        organization: ``source_metadata.source_organization_name``.

    Raises:
        UserError: a missing or corrupt manifest or file, a suite file that does not match the results, or a
            table that does not render back to the bytes its manifest recorded.
    """
    from benchmark.registry import Registry

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.kind != "report":
        raise UserError(f"{directory / MANIFEST}: kind is {manifest.kind!r}; a bundle is exported from a report")
    reg = registry if registry is not None else Registry()
    suite = suite_spec if suite_spec is not None else reg.suite(manifest.name)[0]
    _check_suite_matches(suite, manifest, directory)
    data = _read_data(directory, manifest)
    return make_bundle(manifest, suite, reg, data, organization=organization)


def _check_suite_matches(suite: Any, manifest: Manifest, directory: Path) -> None:
    """The suite file must be the one whose report this is: same name, models and traits."""
    spec = manifest.spec
    checks = {"name": (suite.name, spec.get("suite")), "teachers": (list(suite.teachers), spec.get("teachers")),
              "students": (list(suite.students), spec.get("students"))}
    if "traits" in spec:
        checks["traits"] = (list(suite.traits), spec.get("traits"))
    for key, (mine, theirs) in checks.items():
        if mine != theirs:
            raise UserError(f"{directory}: the suite file's {key} {mine} differ from the published report's "
                            f"{theirs}; export with the suite file that produced these results")


def _read_data(directory: Path, manifest: Manifest) -> Data:
    """Every analysis file of the report as data, each checked to render back to its recorded sha256."""
    files = manifest.files
    tables: dict[str, Table] = {}
    documents: dict[str, Any] = {}
    for name in sorted(files):
        path = directory / name
        if name in _NOT_DATA or not name.endswith((".csv", ".json")):
            continue  # records and renders (report.md, index.html, heatmaps) are not data
        if not path.is_file():
            raise UserError(f"{path}: missing (listed in {directory / MANIFEST})")
        if name.endswith(".csv"):
            tables[name] = read_table(path)
            if _sha(render_csv(tables[name])) != files[name]:
                raise UserError(f"{path}: sha256 differs from the manifest's, or the file does not survive the "
                                "bundle's table format (its numbers or text would change)")
        elif name.endswith(".json"):
            documents[name] = _read_json(path)
            if files[name] not in document_sha256s(documents[name]):
                raise UserError(f"{path}: sha256 differs from the manifest's (edited after publication?)")
    missing = [f for f in (*_CORE_FILES.values(), "fit.json") if f not in tables and f not in documents]
    if missing:
        raise UserError(f"{directory}: missing analysis file(s) {', '.join(missing)}")
    core = {field: tables.pop(name) for field, name in _CORE_FILES.items()}
    return Data(**core, fit=documents.pop("fit.json"), tables=tables, documents=documents)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bundle(manifest: Manifest, suite: Any, reg: Registry, data: Data, *,
                organization: str = "subliminal-bench") -> Bundle:
    """Assemble a bundle from a report manifest, its suite, the registry and the report's data."""
    info = track_info(suite.track, f"suite {suite.name}")
    cells = frame_of(data.cells)
    check_columns(cells, info, f"{suite.name}: {_CORE_FILES['cells']}")
    versions = dict(manifest.versions)
    metric = str(data.fit.get("metric") or (cells["metric"].iloc[0] if "metric" in cells and len(cells) else ""))
    return Bundle(
        schema_version=BUNDLE_SCHEMA_VERSION,
        evaluation_id=f"{suite.name}/{manifest.id}",
        evaluation_timestamp=manifest.started,
        source_metadata=SourceMetadata(source_name="subliminal-bench", source_type="evaluation_run",
                                       source_organization_name=organization, evaluator_relationship="third_party"),
        eval_library=EvalLibrary(name="subliminal-bench", version=versions.get("subliminal-bench", "unknown"),
                                 additional_details={"track": suite.track}),
        dedupe_identity=DedupeIdentity(run_fingerprint=manifest.spec_hash, content_hash=data_hash(data),
                                       canonicalization_version=HASH_VERSION),
        suite=SuiteInfo(name=suite.name, track=suite.track, description=suite.description,
                        spec=suite.model_dump(mode="json"), report_spec=manifest.spec, report_id=manifest.id),
        models=model_infos(suite, reg, versions, manifest.result.get("weights") or {}),
        evaluator_versions={p: versions[p] for p in _EVALUATOR_PACKAGES if p in versions},
        generation_config=_generation_config(suite),
        metric_config=MetricConfig(
            evaluation_description=_description(data.fit),
            lower_is_better=False, metric=metric),
        evaluation_results=cell_results(cells, info),
        shared_base=shared_base(data.fit),
        provenance=Provenance(git_commit=manifest.git.commit, git_dirty=manifest.git.dirty, versions=versions,
                              python=manifest.python, platform=manifest.platform, started=manifest.started,
                              wall_s=manifest.wall_s, manifest_schema=manifest.schema_version,
                              files=dict(manifest.files)),
        data=data,
    )


def _description(fit: dict[str, Any]) -> str:
    """What a pair's effect is, in the analysis's own words (``contrast_definition``; ``lift_definition`` in fits
    written before the pair table)."""
    return str(fit.get("contrast_definition") or fit.get("lift_definition") or "")


def data_hash(data: Data) -> str:
    """``dedupe_identity.content_hash``: the content hash of the bundle's data (every number and row)."""
    return content_hash(data.model_dump(mode="json"))


def model_infos(suite: Any, reg: Registry, versions: dict[str, str],
                recorded: dict[str, dict[str, str]] | None = None) -> list[ModelInfo]:
    """The registry entry of every model the suite names, teachers first, with its roles; ``recorded``: the weight
    files of fetched models as the report recorded them (``slbench models fetch``; model -> file, sha256)."""
    out = []
    for name in dict.fromkeys([*suite.teachers, *suite.students]):
        model = reg.model(name, where=f"suite {suite.name}")
        roles: list[Any] = [r for r, names in (("teacher", suite.teachers), ("student", suite.students))
                            if name in names]
        reqs = requirements(model.provider)  # the package that runs its models (Every Eval Ever inference_engine)
        engine = model.provider if reqs is None else reqs.engine
        entry = model.hashed_dict()
        out.append(ModelInfo(
            name=name, id=model.source or f"subliminal-bench/{name}", family=model.family, provider=model.provider,
            inference_platform=model.provider, inference_engine=InferenceEngine(name=engine,
                                                                                 version=versions.get(engine)),
            revision=model.revision, lineage_init=model.lineage.init, lineage_parent=model.lineage.parent,
            roles=roles, entry=entry, entry_hash=content_hash(entry),
            weights=_weights(model, reg.root) or _fetched_weights(name, (recorded or {}).get(name))))
    return out


def _fetched_weights(name: str, recorded: dict[str, str] | None) -> WeightsInfo | None:
    """A fetched model's weight file in the model cache, with the sha256 its base node recorded when the suite ran."""
    if not recorded:
        return None
    return WeightsInfo(file=f"{CACHE_PREFIX}models/{name}/{recorded['file']}", sha256=recorded["sha256"])


def _weights(model: Any, root: Path) -> WeightsInfo | None:
    """The committed weights file of a model built by the project (the embedded zoo), with its recorded sha256."""
    if model.build is None:
        return None
    from benchmark.zoo.build import committed_dir, read_build_manifest
    from benchmark.zoo.spec import is_zoo

    if not is_zoo(model):
        return None
    directory = committed_dir(model, root)
    if directory is None:
        return None
    sha = read_build_manifest(directory).get("files", {}).get("model.safetensors")
    if not sha:
        return None
    return WeightsInfo(file=str((directory / "model.safetensors").relative_to(root)), sha256=sha)


def _generation_config(suite: Any) -> GenerationConfig:
    """How the teachers generated their data (the LM track's dataset settings); empty for tracks without one."""
    from benchmark.tracks import settings_cls

    settings = settings_cls(suite.track, suite.settings, f"suite {suite.name}: settings")
    dataset = getattr(settings, "dataset", None)
    if dataset is None or not hasattr(dataset, "temperature"):
        return GenerationConfig()
    return GenerationConfig(generation_args=GenerationArgs(
        temperature=dataset.temperature, top_k=dataset.top_k, max_tokens=dataset.max_new_tokens,
        prompt_template=getattr(dataset, "channel", None)))


def cell_results(cells: pd.DataFrame, info: TrackInfo) -> list[CellResult]:
    """The pair table as Every Eval Ever ``evaluation_results`` (trait pairs, then placebo rows, in table order)."""
    cols: CellColumns = info.cells

    def opt(row: dict[str, Any], column: str | None) -> float | None:
        return _num(row.get(column)) if column else None

    out = []
    for row in cells.to_dict(orient="records"):
        placebo = bool(row[cols.placebo]) if cols.placebo else False
        ci = ConfidenceInterval(lower=_num(row["ci_low"]), upper=_num(row["ci_high"]),
                                confidence_level=CONFIDENCE_LEVEL, method=cols.ci_method)
        out.append(CellResult(
            evaluation_name=cols.key(row), teacher=str(row[cols.teacher]), student=str(row[cols.student]),
            trait=str(row[cols.trait]), relation=row["relation"],
            family=str(row[cols.family]) if cols.family else None, placebo=placebo,
            transfer_ratio=opt(row, cols.transfer_ratio),
            score_details=ScoreDetails(score=_num(row["effect"]),
                                       uncertainty=Uncertainty(confidence_interval=ci, num_samples=int(row[cols.n])),
                                       p_value=_num(row[cols.p]), q_value=opt(row, cols.q),
                                       p_drift=opt(row, cols.p_drift), q_drift=opt(row, cols.q_drift))))
    return out


def shared_base(fit: dict[str, Any]) -> SharedBase:
    """γ and its uncertainty from ``fit.json``: its ``primary`` fit (teacher-block permutation p, CR2 CI clustered
    by pair), or the top-level keys of a fit written before it (γ, ``p_perm``, a CI clustered as ``cluster``)."""
    found = fit.get("placebo")
    placebo: dict[str, Any] = found if isinstance(found, dict) else {}  # the classifier track has no A/A arm
    primary = fit.get("primary")
    if isinstance(primary, dict):
        method = str(primary.get("method", ""))
        ci = ConfidenceInterval(lower=_num(primary.get("ci_low")), upper=_num(primary.get("ci_high")),
                                confidence_level=CONFIDENCE_LEVEL, method=method)
        return SharedBase(gamma=_num(primary.get("estimate")), p_value=_num(primary.get("p")),
                          uncertainty=Uncertainty(confidence_interval=ci, num_samples=int(primary.get("n_pairs") or 0)),
                          indicator=str(primary.get("indicator", "")), method=method,
                          leave_one_base_out_min=_num(primary.get("lobo_min")),
                          leave_one_base_out_max=_num(primary.get("lobo_max")),
                          placebo_rate=_num(placebo.get("rate")), placebo_exact_size=_num(placebo.get("exact_size")))
    method = f"{fit.get('ci_method', '')} cluster-robust t-interval (clusters: {fit.get('cluster', '')})"
    ci = ConfidenceInterval(lower=_num(fit.get("ci_low")), upper=_num(fit.get("ci_high")),
                            confidence_level=CONFIDENCE_LEVEL, method=method)
    return SharedBase(gamma=_num(fit.get("gamma")), p_value=_num(fit.get("p_perm")),
                      uncertainty=Uncertainty(confidence_interval=ci, num_samples=int(fit.get("n_clusters") or 0)),
                      indicator=str(fit.get("indicator", "")), method=method,  # its loo_* left out one cell
                      placebo_rate=_num(placebo.get("rate", fit.get("placebo_fpr"))),
                      placebo_exact_size=_num(placebo.get("exact_size")))


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and abs(out) != float("inf") else None


def dump_json(obj: Any, indent: int = 0) -> str:
    """JSON with one key per line but every list of scalars on one line (a table row stays one line).

    Deterministic (keys in model order), UTF-8 text, and valid strict JSON.
    """
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {dump_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + dump_json(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def bundle_bytes(bundle: Bundle) -> bytes:
    """The bytes of ``bundle.json``."""
    return (dump_json(bundle.model_dump(mode="json")) + "\n").encode("utf-8")


def derived_files(src: Path, published: Path | None = None, *, suite_spec: Any = None, registry: Registry | None = None,
                  store: Path | None = None, samples: bool = False,
                  organization: str = "subliminal-bench") -> dict[str, bytes]:
    """The files written beside a report's files: ``bundle.json``, ``samples.jsonl`` when asked for or when the
    copy being replaced holds one (what ``slbench export --samples`` added is regenerated, never dropped), and the
    Every Eval Ever records (``eee/data/...``, :mod:`benchmark.bundle.eee`) when the copy being replaced holds an
    ``eee/`` folder (what ``slbench export --format eee`` added is regenerated the same way).

    Used by publishing (:func:`benchmark.publish.publish_dir`, ``published`` the folder being replaced) and by
    ``slbench export`` (``published`` the folder the bundle is written to).

    Args:
        src: The report's files (a finished report node, or a published suite folder).
        published: Where the files go; a ``samples.jsonl`` already there is regenerated.
        suite_spec: The suite that was run (default: ``tasks/suites/<name>.yaml``).
        registry: The registry holding its models (default: the project's).
        store: The store holding the report's inputs (needed for the sample log only).
        samples: Write the sample log even if ``published`` holds none.
        organization: ``source_metadata.source_organization_name``.

    Raises:
        UserError: the bundle cannot be exported, or the sample log cannot be read from ``store``.
    """
    bundle = export_bundle(src, suite_spec=suite_spec, registry=registry, organization=organization)
    out: dict[str, bytes] = {}
    kept = published is not None and (published / SAMPLES).is_file()
    if samples or kept:
        found = None if samples or published is None else _kept_samples(published, bundle.suite.report_id)
        if found is not None:
            text, meta = found
        elif store is None:
            raise UserError(f"{Path(published or src) / SAMPLES}: the sample log is regenerated from the store of the "
                            "report's inputs, and none was given; pass --store, or delete the file")
        else:
            try:
                text, meta = sample_log(src, store)
            except UserError as exc:
                if samples:
                    raise
                raise UserError(f"{Path(published or src) / SAMPLES}: kept beside the bundle, so it is regenerated, "
                                f"but the store {store} cannot give it ({exc}); pass --store, or delete the file") from None
        out[SAMPLES] = text
        bundle = bundle.model_copy(update={"detailed_evaluation_results": meta})
    out[BUNDLE] = bundle_bytes(bundle)
    if published is not None and (published / EEE_DIR).is_dir():
        out.update(eee_files(bundle))
    return out


def _kept_samples(folder: Path, report_id: str) -> tuple[bytes, SampleLog] | None:
    """The sample log beside the bundle in ``folder``, if that bundle is of the same report and records the log's
    sha256 (then it is the log :func:`sample_log` would give); None otherwise (it must be regenerated)."""
    try:
        old = Bundle.model_validate_json((folder / BUNDLE).read_bytes())
        text = (folder / SAMPLES).read_bytes()
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None
    meta = old.detailed_evaluation_results
    if old.suite.report_id != report_id or meta is None or meta.file_path != SAMPLES or meta.checksum != _sha(text):
        return None
    return text, meta


#: File name of the optional per-sample log beside a bundle.
SAMPLES = "samples.jsonl"
#: Payload files of the report's inputs that hold per-sample results (LM evaluations, classifier students).
_SAMPLE_FILES = ("eval.json", "metrics.json")
#: Fields of a dataset's kept rows in the sample log (``rows.jsonl`` also holds token ids and soft labels).
_KEPT_FIELDS = ("prompt", "completion", "judge")


def _checked_bytes(node: Path, name: str, files: dict[str, str]) -> bytes:
    """A payload file's bytes, after checking them against the manifest's sha256."""
    data = (node / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != files[name]:
        raise UserError(f"{node / name}: sha256 differs from its manifest; run `slbench status --verify`")
    return data


def _dataset_payload(node: Path, dep: Any) -> dict[str, Any]:
    """A dataset node's line of the sample log: ``labels`` and ``counts`` (``counts.json``: the reject histogram),
    the teacher's ``system_prompt``, ``n_kept`` and the first :data:`~benchmark.lm.rejects.PER_REASON` kept rows
    (``kept``: prompt, completion, judge verdict) and ``rejected`` (``rejected.jsonl``: the first rejected
    completions of every reason, with the reason)."""
    from benchmark.lm.rejects import PER_REASON, REJECTED

    counts = json.loads(_checked_bytes(node, "counts.json", dep.files))
    rows = [json.loads(line) for line in _checked_bytes(node, "rows.jsonl", dep.files).splitlines() if line.strip()]
    rejected = [json.loads(line) for line in _checked_bytes(node, REJECTED, dep.files).splitlines() if line.strip()]
    return {"labels": counts.get("labels", {}), "counts": counts, "system_prompt": dep.result.get("system_prompt"),
            "n_kept": len(rows), "kept": [{k: r[k] for k in _KEPT_FIELDS if k in r} for r in rows[:PER_REASON]],
            "rejected": rejected}


def sample_log(directory: Path, store: Path) -> tuple[bytes, SampleLog]:
    """The per-sample log of a report: one JSON line per input node that holds results, from the store.

    Each line is ``{"node": <key>, **payload}`` where the payload is the node's ``eval.json`` (an LM evaluation:
    labels, role, per-prompt log-probs or sampled answers) or ``metrics.json`` (a classifier node's per-seed
    accuracies), or, for a teacher's dataset node that kept a sample of its rejects (``rejected.jsonl``, nodes built
    since it exists), :func:`_dataset_payload`. Every file read is checked against its node's manifest (sha256)
    first. A report whose dataset nodes predate ``rejected.jsonl`` has a log of evaluations only, as before.

    Raises:
        UserError: an input node missing from ``store`` or a payload that does not match its manifest.
    """
    from benchmark.lm.rejects import REJECTED

    manifest = read_manifest(directory)
    lines = []
    for key in manifest.deps:
        node = Path(store) / key
        dep = read_manifest(node)
        payloads = [json.loads(_checked_bytes(node, name, dep.files)) for name in _SAMPLE_FILES if name in dep.files]
        if REJECTED in dep.files:
            payloads.append(_dataset_payload(node, dep))
        for payload in payloads:
            row = {"node": key, **payload}
            lines.append(json.dumps(row, sort_keys=True, ensure_ascii=False, allow_nan=False))
    text = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
    meta = SampleLog(format="jsonl", file_path=SAMPLES, checksum=hashlib.sha256(text).hexdigest(),
                     total_rows=len(lines))
    return text, meta
