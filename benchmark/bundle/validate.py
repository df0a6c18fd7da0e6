"""Validate a results bundle the way a submission is checked: every problem is one line naming what is wrong.

Checks, in order (a bundle that fails the schema is not checked further):

1. **Schema**: the JSON parses and matches :class:`~benchmark.bundle.schema.Bundle` (every pydantic error is a line).
2. **Hashes**: the report id is the run fingerprint's prefix, the fingerprint is the hash of the report spec, the
   content hash is the hash of the data, and every table and document renders back to the sha256 the report
   node's manifest recorded for that file (the rows are exactly what the experiment wrote).
3. **Versions**: the evaluator and inference-engine versions are the ones the manifest recorded.
4. **Models and suite**: each registry entry hashes to its recorded hash and agrees with this checkout's registry;
   the suite file names the report's models and traits; planning the suite with those entries reproduces the
   report node's id (so the suite, the registry and the task files are the ones that produced the results).
5. **Statistics**: the pair table, the matrix, the shared-base fit and the track's other files are recomputed from
   the replicate rows (and the track's input tables: the LM teachers and candidates) by the code that produced
   them (:mod:`benchmark.analysis`, through the report stage's own options), and compared with the bundle's, as
   are ``evaluation_results`` and ``shared_base``; a difference names the pair and the column.
6. **Design**: controls and placebo readouts are present (:mod:`benchmark.bundle.tracks`).
7. **Per-sample log**: when the bundle names one, it exists beside it with the recorded checksum and row count.

Tolerance of the comparison in 5: relative 1e-9 (absolute 1e-12 near zero). The recomputation runs the same
code on the same float64 inputs; it can only differ in the last bits where a numpy/BLAS build sums in another
order (about 1e-16 relative per operation, some 1e-13 after a least-squares fit of a few hundred rows). 1e-9 is
far above that and far below any printed digit (the reports show 3 significant figures), so an edited number
is always caught and a reproduction on another machine is not. Permutation p-values are recomputed with the
suite's seed and permutation count; they match exactly unless a test statistic ties at the last bit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import ValidationError

from benchmark.bundle.export import BUNDLE, cell_results, data_hash, shared_base
from benchmark.bundle.schema import BUNDLE_SCHEMA_VERSION, Bundle, Table
from benchmark.bundle.tables import document_sha256s, frame_of, render_csv
from benchmark.bundle.tracks import TrackInfo, track_info
from benchmark.errors import UserError
from benchmark.hashing import content_hash

if TYPE_CHECKING:
    from benchmark.registry import Registry

__all__ = ["MAX_LINES", "RTOL", "ATOL", "load_bundle", "validate_bundle", "validate_bundle_file"]

#: Relative and absolute tolerance of recomputed statistics (see the module docstring for why).
RTOL = 1e-9
ATOL = 1e-12
#: At most this many problem lines per check (a rewritten table would otherwise print thousands).
MAX_LINES = 40
#: Files of a report node that are records, not analysis data.
_RECORDS = ("manifest.json", "spec.json", BUNDLE)
#: The file ``data.cells`` renders to (``benchmark.analysis.SHARED_FILES["cells"]``).
_PAIRS = "pairs.csv"


def load_bundle(path: Path) -> tuple[Bundle | None, list[str]]:
    """Parse and schema-check a bundle file: (the bundle, []) or (None, one line per problem)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except UnicodeDecodeError:
        return None, [f"{path}: not UTF-8 text"]
    except json.JSONDecodeError as exc:
        return None, [f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})"]
    if isinstance(raw, dict) and raw.get("schema_version") not in (None, BUNDLE_SCHEMA_VERSION):
        return None, [f"{path}: schema_version {raw.get('schema_version')!r}; this version reads "
                      f"{BUNDLE_SCHEMA_VERSION!r}"]
    try:
        return Bundle.model_validate(raw), []
    except ValidationError as err:
        return None, [f"{path}: schema: {_loc(e['loc'])}: {e['msg']}" for e in err.errors()][:MAX_LINES]


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def validate_bundle_file(path: Path, registry: Registry | None = None) -> list[str]:
    """Every problem of the bundle at ``path`` as one line (empty: the bundle is valid)."""
    bundle, problems = load_bundle(path)
    if bundle is None:
        return problems
    return [f"{path}: {p}" for p in validate_bundle(bundle, registry=registry, directory=Path(path).parent)]


def validate_bundle(bundle: Bundle, registry: Registry | None = None, directory: Path | None = None) -> list[str]:
    """Every problem of a parsed bundle (checks 2-7 of the module docstring), one line each."""
    from benchmark.registry import Registry

    reg = registry if registry is not None else Registry()
    try:
        info = track_info(bundle.suite.track, "suite.track")
    except UserError as exc:
        return [str(exc)]
    problems = [*_hash_problems(bundle), *_version_problems(bundle), *_model_problems(bundle, reg),
                *_suite_problems(bundle, reg), *_statistics_problems(bundle, info), *_design_problems(bundle, info)]
    if bundle.detailed_evaluation_results is not None and directory is not None:
        problems += _sample_log_problems(bundle, directory)
    return problems


# -- 2. hashes ---------------------------------------------------------------------------------------------------
def _hash_problems(bundle: Bundle) -> list[str]:
    ident, suite = bundle.dedupe_identity, bundle.suite
    problems = []
    fingerprint = content_hash({"kind": "report", "spec": suite.report_spec})
    if ident.run_fingerprint != fingerprint:
        problems.append(f"dedupe_identity.run_fingerprint {ident.run_fingerprint[:12]}… is not the hash of "
                        f"suite.report_spec ({fingerprint[:12]}…)")
    if suite.report_id != ident.run_fingerprint[:12]:
        problems.append(f"suite.report_id {suite.report_id} is not the run fingerprint's prefix "
                        f"{ident.run_fingerprint[:12]}")
    if bundle.evaluation_id != f"{suite.name}/{suite.report_id}":
        problems.append(f"evaluation_id {bundle.evaluation_id!r} should be {suite.name}/{suite.report_id}")
    if ident.content_hash != data_hash(bundle.data):
        problems.append("dedupe_identity.content_hash does not match data (a number or row was changed after export)")
    return problems + _file_problems(bundle)


def _file_problems(bundle: Bundle) -> list[str]:
    """Each table and document must render to the sha256 its report manifest recorded."""
    files = bundle.provenance.files
    data = bundle.data
    tables: dict[str, Table] = {"tidy.csv": data.replicate_rows, _PAIRS: data.cells, "matrix.csv": data.matrix,
                                **data.tables}
    problems = []
    for name, table in tables.items():
        if name not in files:
            problems.append(f"data: {name} is not a file of the report (provenance.files)")
            continue
        try:
            sha = hashlib.sha256(render_csv(table)).hexdigest()
        except UserError as exc:
            problems.append(f"data: {name}: {exc}")
            continue
        if sha != files[name]:
            problems.append(f"data: {name} differs from the file the report wrote (sha256 {sha[:12]}…, "
                            f"manifest {files[name][:12]}…)")
    docs = {"fit.json": data.fit, **data.documents}
    for name, doc in docs.items():
        if files.get(name) not in document_sha256s(doc):
            problems.append(f"data: {name} differs from the file the report wrote (provenance.files)")
    missing = [n for n in files if n.endswith((".csv", ".json")) and n not in (*tables, *docs, *_RECORDS)]
    problems += [f"data: {n} is missing (the report wrote it; provenance.files)" for n in missing]
    return problems


# -- 3. versions -------------------------------------------------------------------------------------------------
def _version_problems(bundle: Bundle) -> list[str]:
    versions = bundle.provenance.versions
    problems = []
    if bundle.eval_library.version != versions.get("subliminal-bench", "unknown"):
        problems.append(f"eval_library.version {bundle.eval_library.version} differs from provenance.versions "
                        f"subliminal-bench {versions.get('subliminal-bench')}")
    for pkg, version in bundle.evaluator_versions.items():
        if versions.get(pkg) != version:
            problems.append(f"evaluator_versions.{pkg} {version} differs from provenance.versions {versions.get(pkg)}")
    for m in bundle.models:
        engine = m.inference_engine
        if engine.version is not None and versions.get(engine.name) != engine.version:
            problems.append(f"model {m.name}: inference_engine {engine.name} {engine.version} differs from "
                            f"provenance.versions {versions.get(engine.name)}")
    return problems


# -- 4. models and suite -----------------------------------------------------------------------------------------
def _model_problems(bundle: Bundle, reg: Registry) -> list[str]:
    problems = []
    spec = bundle.suite.report_spec
    named = list(dict.fromkeys([*spec.get("teachers", []), *spec.get("students", [])]))
    have = [m.name for m in bundle.models]
    if sorted(have) != sorted(named):
        problems.append(f"models {have} are not the report's teachers and students {named}")
    lineage = spec.get("lineage", {})
    for m in bundle.models:
        if m.entry_hash != content_hash(m.entry):
            problems.append(f"model {m.name}: entry_hash is not the hash of its registry entry")
        init = (m.entry.get("lineage") or {}).get("init")
        if init != m.lineage_init or (m.name in lineage and lineage[m.name] != init):
            problems.append(f"model {m.name}: lineage_init {m.lineage_init!r}, entry {init!r} and the report's "
                            f"lineage {lineage.get(m.name)!r} disagree")
        problems += _registry_problems(m, reg) + _weights_problems(m, reg.root)
    return problems


def _registry_problems(model: Any, reg: Registry) -> list[str]:
    """The bundle's entry must be this checkout's entry of the same name (a submission adds its family YAML)."""
    try:
        local = reg.models.get(model.name)
    except UserError as exc:
        return [f"model {model.name}: cannot read the registry: {exc}"]
    if local is None:
        return [f"model {model.name}: not in this checkout's registry (model_registry/); a submission adds its "
                "family YAML"]
    mine = local.hashed_dict()
    if content_hash(mine) == model.entry_hash:
        return []
    keys = sorted(k for k in {*mine, *model.entry} if mine.get(k) != model.entry.get(k))
    return [f"model {model.name}: the registry entry differs from this checkout's in {', '.join(keys)}"]


def _weights_problems(model: Any, root: Path) -> list[str]:
    """A weights file named by the bundle and present here must have the recorded sha256."""
    if model.weights is None:
        return []
    from benchmark.bundle.schema import CACHE_PREFIX

    if model.weights.file.startswith(CACHE_PREFIX):  # a fetched model: checked where this machine has fetched it
        from benchmark.models_fetch import cache_root

        path = cache_root() / model.weights.file[len(CACHE_PREFIX):]
    else:
        path = Path(root) / model.weights.file
    if not path.is_file():
        return []
    from benchmark.files import sha256_file

    if sha256_file(path) != model.weights.sha256:
        return [f"model {model.name}: {model.weights.file} has another sha256 than the bundle records"]
    return []


def _suite_problems(bundle: Bundle, reg: Registry) -> list[str]:
    """The suite file must name the report's models and traits, and planning it must give the report's id."""
    from benchmark.specs import SuiteSpec

    suite, spec = bundle.suite, bundle.suite.report_spec
    try:
        parsed = SuiteSpec.model_validate(suite.spec)
    except ValidationError as err:
        return [f"suite.spec: {_loc(e['loc'])}: {e['msg']}" for e in err.errors()][:MAX_LINES]
    problems = []
    for key in ("teachers", "students", "traits"):
        if key in spec and list(getattr(parsed, key)) != spec[key]:
            problems.append(f"suite.spec.{key} {getattr(parsed, key)} differs from the report's {spec[key]}")
    if parsed.name != suite.name or spec.get("suite") != suite.name or parsed.track != suite.track:
        problems.append(f"suite name/track disagree: {suite.name}/{suite.track}, spec {parsed.name}/{parsed.track}, "
                        f"report {spec.get('suite')}")
    if problems:
        return problems
    return _replan_problems(bundle, parsed, reg)


def _replan_problems(bundle: Bundle, parsed: Any, reg: Registry) -> list[str]:
    """Plan the suite with the bundle's registry entries and this checkout's tasks; the report id must match."""
    from benchmark.registry import Registry
    from benchmark.specs import ModelSpec
    from benchmark.tracks import settings_cls, track_for

    order = [*bundle.suite.report_spec.get("order", []), *(m.name for m in bundle.models)]
    entries = {m.name: m for m in bundle.models}
    replica = Registry(reg.root)
    try:
        models = {n: ModelSpec.model_validate({k: v for k, v in entries[n].entry.items() if k != "__spec__"})
                  for n in dict.fromkeys(order)}
        replica.__dict__["models"] = models  # the bundle's entries stand in for the registry files
        settings = settings_cls(parsed.track, parsed.settings, "suite.spec.settings")
        nodes = track_for(parsed.track).build_plan(parsed, settings, replica)
    except (UserError, ValidationError, KeyError) as exc:
        return [f"cannot re-plan the suite here to check its report id: {str(exc).splitlines()[0]}"]
    report = next((n for n in nodes if n.kind == "report"), None)
    if report is None or report.spec_hash == bundle.dedupe_identity.run_fingerprint:
        return []
    theirs = bundle.suite.report_spec
    differ = sorted(k for k in {*report.spec, *theirs} if report.spec.get(k) != theirs.get(k))
    return [f"the suite planned here gives report {report.id}, not {bundle.suite.report_id}: its "
            f"{', '.join(differ)} differ — {_changed_since(bundle.provenance.git_commit, Path(reg.root))} "
            "(published node ids must not change)"]


#: Task files a suite's node ids never read: other suites and groups (the bundle carries its own suite's spec).
_NOT_INPUTS = ("tasks/suites/",)


def _changed_since(commit: str | None, root: Path, show: int = 6) -> str:
    """Which task files differ from the commit the results were made at (git, committed or not, new files
    included); a plain sentence when git or that commit is not available here."""
    import subprocess

    generic = "a task file, channel or registry entry changed since these results were made"

    def git(*args: str) -> list[str] | None:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.splitlines() if r.returncode == 0 else None

    if not commit:
        return generic
    changed = git("diff", "--name-only", commit, "--", "tasks")
    new = git("ls-files", "--others", "--exclude-standard", "--", "tasks")
    if changed is None or new is None:
        return f"{generic} (their commit {commit[:12]} is not in this checkout, so the file cannot be named)"
    files = [f for f in dict.fromkeys([*changed, *new]) if not f.startswith(_NOT_INPUTS)]
    if not files:
        return f"{generic} (no task file differs from their commit {commit[:12]}: a registry entry or the code did)"
    more = f" and {len(files) - show} more" if len(files) > show else ""
    return f"task files changed since their commit {commit[:12]}: {', '.join(files[:show])}{more}"


# -- 5. statistics -----------------------------------------------------------------------------------------------
def _statistics_problems(bundle: Bundle, info: TrackInfo) -> list[str]:
    """Recompute the analysis from the replicate rows and compare every published number."""
    data = bundle.data
    tidy = frame_of(data.replicate_rows)
    inputs = {name: frame_of(t) for name, t in data.tables.items() if name in info.inputs}
    try:
        analysis = info.recompute(tidy, inputs, bundle.suite.report_spec)
    except (UserError, KeyError, ValueError) as exc:
        return [f"cannot recompute the statistics from data.replicate_rows: {str(exc).splitlines()[0]}"]
    written = _written(analysis)
    problems = _compare_cells(frame_of(data.cells), written.pop(_PAIRS), info)
    problems += _compare_value("fit", data.fit, json.loads(json.dumps(_json_safe(analysis.fit))))
    problems += _compare_frame("matrix.csv", frame_of(data.matrix), written.pop("matrix.csv"))
    written.pop("tidy.csv", None)
    for name, frame in written.items():
        if name.endswith(".csv"):
            mine = data.tables.get(name)
            problems += ([f"data.tables: {name} is missing (the analysis writes it)"] if mine is None
                         else _compare_frame(name, frame_of(mine), frame))
        elif name.endswith(".json"):
            problems += _compare_value(name, data.documents.get(name), frame)
    problems += _compare_results(bundle, info)
    return problems[:MAX_LINES] + ([f"... and {len(problems) - MAX_LINES} more"] if len(problems) > MAX_LINES else [])


def _json_safe(obj: Any) -> Any:
    from benchmark.files import json_safe

    return json_safe(obj)


def _written(analysis: Any) -> dict[str, Any]:
    """The files :func:`benchmark.analysis.write_analysis` writes for an analysis: CSVs as frames, JSON as values."""
    import tempfile

    from benchmark.analysis import write_analysis
    from benchmark.bundle.tables import read_table

    with tempfile.TemporaryDirectory(prefix="slbench-validate-") as tmp:
        paths = write_analysis(analysis, tmp)
        out: dict[str, Any] = {}
        for path in paths.values():
            if path.suffix == ".csv":
                out[path.name] = frame_of(read_table(path))
            elif path.name != "fit.json":
                out[path.name] = json.loads(path.read_text(encoding="utf-8"))
        return out


def _close(a: Any, b: Any) -> bool:
    """Equal, or numbers within the tolerance (NaN/None equal NaN/None)."""
    na, nb = _is_missing(a), _is_missing(b)
    if na or nb:
        return na and nb
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return bool(a == b)
    return math.isclose(float(a), float(b), rel_tol=RTOL, abs_tol=ATOL)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any) -> str:
    return "null" if _is_missing(v) else f"{v:.6g}" if isinstance(v, float) else repr(v)


def _compare_cells(mine: pd.DataFrame, recomputed: pd.DataFrame, info: TrackInfo) -> list[str]:
    """Pair by pair, column by column: each difference names the pair and the column."""
    cols = info.cells
    key_cols = [c for c in (cols.teacher, cols.student, cols.trait, cols.placebo) if c]
    if any(c not in mine.columns for c in key_cols):
        return [f"data.cells ({_PAIRS}): missing key column(s) "
                f"{', '.join(c for c in key_cols if c not in mine.columns)}"]
    by_key = {cols.key(r): r for r in mine.to_dict(orient="records")}
    problems = []
    seen = set()
    for row in recomputed.to_dict(orient="records"):
        name = cols.key(row)
        seen.add(name)
        have = by_key.get(name)
        if have is None:
            problems.append(f"pair {name}: missing (the replicate rows give it)")
            continue
        for col, value in row.items():
            if col not in have:
                problems.append(f"pair {name}: column {col} missing")
            elif not _close(have[col], value):
                problems.append(f"pair {name}: {col} is {_fmt(have[col])} in the bundle, {_fmt(value)} recomputed "
                                "from the replicate rows")
    problems += [f"pair {name}: not in the recomputed pairs (no replicate rows give it)" for name in by_key
                 if name not in seen]
    return problems


def _compare_frame(name: str, mine: pd.DataFrame, recomputed: pd.DataFrame) -> list[str]:
    if list(mine.columns) != list(recomputed.columns) or len(mine) != len(recomputed):
        return [f"data: {name} has columns {list(mine.columns)} × {len(mine)} rows, recomputed "
                f"{list(recomputed.columns)} × {len(recomputed)}"]
    problems = []
    for i, (a, b) in enumerate(zip(mine.to_dict(orient="records"), recomputed.to_dict(orient="records"),
                                   strict=True)):
        label = a.get(mine.columns[0], i)
        problems += [f"data: {name} row {label!r}: {c} is {_fmt(a[c])}, recomputed {_fmt(b[c])}" for c in a
                     if not _close(a[c], b[c])]
    return problems


def _compare_value(path: str, mine: Any, recomputed: Any) -> list[str]:
    """Recursive comparison of JSON values; each difference names its path (``fit.by_relation.same.mean``)."""
    if isinstance(recomputed, Mapping):
        if not isinstance(mine, Mapping):
            return [f"{path}: expected an object"]
        keys = list(dict.fromkeys([*recomputed, *mine]))
        out: list[str] = []
        for k in keys:
            if k not in mine or k not in recomputed:
                out.append(f"{path}.{k}: {'missing in the bundle' if k not in mine else 'not recomputed'}")
            else:
                out += _compare_value(f"{path}.{k}", mine[k], recomputed[k])
        return out
    if isinstance(recomputed, list):
        if not isinstance(mine, list) or len(mine) != len(recomputed):
            return [f"{path}: a list of {len(recomputed)} values recomputed, the bundle differs"]
        return [p for i, (a, b) in enumerate(zip(mine, recomputed, strict=True))
                for p in _compare_value(f"{path}[{i}]", a, b)]
    if not _close(mine, recomputed):
        return [f"{path} is {_fmt(mine)} in the bundle, {_fmt(recomputed)} recomputed from the replicate rows"]
    return []


def _compare_results(bundle: Bundle, info: TrackInfo) -> list[str]:
    """``evaluation_results`` and ``shared_base`` must be the views of the bundle's pairs and fit."""
    expected = {r.evaluation_name: r.model_dump(mode="json") for r in cell_results(frame_of(bundle.data.cells), info)}
    problems = []
    got_names = [r.evaluation_name for r in bundle.evaluation_results]
    if sorted(got_names) != sorted(expected):
        problems.append(f"evaluation_results: {len(got_names)} pairs, {_PAIRS} has {len(expected)}")
    for r in bundle.evaluation_results:
        want = expected.get(r.evaluation_name)
        if want is not None:
            problems += [f"evaluation_results {r.evaluation_name}: {p.removeprefix('result.')}"
                         for p in _compare_value("result", r.model_dump(mode="json"), want)]
    problems += _compare_value("shared_base", bundle.shared_base.model_dump(mode="json"),
                               shared_base(bundle.data.fit).model_dump(mode="json"))
    return [p.replace("recomputed from the replicate rows", f"in {_PAIRS}/fit.json") for p in problems]


# -- 6. design ---------------------------------------------------------------------------------------------------
def _design_problems(bundle: Bundle, info: TrackInfo) -> list[str]:
    from benchmark.tracks import settings_cls

    suite = bundle.suite
    try:
        settings = settings_cls(suite.track, suite.spec.get("settings", {}), "suite.spec.settings")
        problems = info.design(frame_of(bundle.data.replicate_rows), frame_of(bundle.data.cells), suite.report_spec,
                               settings)
    except (UserError, KeyError) as exc:
        return [f"cannot check the design's controls: {str(exc).splitlines()[0]}"]
    return problems[:MAX_LINES] + ([f"... and {len(problems) - MAX_LINES} more"] if len(problems) > MAX_LINES else [])


# -- 7. per-sample log -------------------------------------------------------------------------------------------
def _sample_log_problems(bundle: Bundle, directory: Path) -> list[str]:
    log = bundle.detailed_evaluation_results
    assert log is not None
    path = (directory / log.file_path).resolve()
    if directory.resolve() not in path.parents:
        return [f"detailed_evaluation_results.file_path {log.file_path!r} must stay inside {BUNDLE}'s directory"]
    if not path.is_file():
        return [f"detailed_evaluation_results: {log.file_path} not found beside the bundle"]
    from benchmark.files import sha256_file

    if sha256_file(path) != log.checksum:
        return [f"detailed_evaluation_results: {log.file_path} has another sha256 than the bundle records"]
    if log.format == "jsonl":
        with path.open("rb") as fh:
            rows = sum(1 for line in fh if line.strip())
        if rows != log.total_rows:
            return [f"detailed_evaluation_results: {log.file_path} has {rows} rows, the bundle says {log.total_rows}"]
    return []

