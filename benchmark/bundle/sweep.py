"""The sweep summary's schema and its validation (``results/suites/<sweep>/``: ``sweep.json``, ``summary.csv``).

A sweep's summary (:func:`benchmark.sweep.write_sweep_summary`) has no bundle of its own: each level is a suite with
its bundle, and the summary is a function of the levels' published files. Its two machine-read files are typed
here: :class:`SweepSummary` is ``sweep.json`` (the sweep, the swept setting, the reference level, each level's
suite and report id) and :class:`SummaryRow` is one row of ``summary.csv`` (its fields, in order, are the CSV's
columns). The JSON Schema in ``schemas/sweep.schema.json`` is generated from them (``python -m benchmark.bundle
--write``; a test keeps it in sync): the document is ``sweep.json``, and ``$defs.SummaryRow`` a row of
``summary.csv`` read by :func:`summary_rows` (empty cells null, numbers as numbers).

:func:`validate_sweep_summary` is what ``slbench validate results/suites/<sweep>/`` runs: both files against the
schema, the rows against ``sweep.json``'s levels, and each level's report id against the level's published
manifest where that folder is beside it. Torch- and pandas-free.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["COLUMNS", "SUMMARY_CSV", "SWEEP_JSON", "SWEEP_SCHEMA_VERSION", "SummaryRow", "SweepLevelInfo", "SweepSummary",
           "json_schema", "schema_text", "summary_rows", "validate_sweep_summary"]

#: File names of the summary's machine-read files.
SWEEP_JSON: Final = "sweep.json"
SUMMARY_CSV: Final = "summary.csv"
#: Version of the summary's layout, in the schema file; changes whenever a field changes meaning or is removed.
SWEEP_SCHEMA_VERSION: Final = "1.0"
#: At most this many problem lines per file.
_MAX_LINES = 40


class SweepLevelInfo(BaseModel):
    """One level of the sweep as ``sweep.json`` lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: str = Field(min_length=1, description="The level's slug (the suffix of its suite's name).")
    value: Any = Field(description="The swept setting's value at this level, as the sweep file gives it.")
    suite: str = Field(min_length=1, description="The level's suite, published in results/suites/<suite>/.")
    report: str | None = Field(description="The id of the level's report node (its published manifest's id).")


class SweepSummary(BaseModel):
    """``sweep.json``: what was swept, over which levels, against which reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep: str = Field(min_length=1, description="The sweep's name (its suite file's).")
    path: str = Field(pattern=r"^settings\.", description="The swept setting, as `settings.<block>.<key>...`.")
    reference: str = Field(min_length=1, description="The suite of the reference level (transfer remaining = 1).")
    levels: list[SweepLevelInfo] = Field(min_length=2, description="The levels, in the sweep file's order.")


class SummaryRow(BaseModel):
    """One row of ``summary.csv`` (one level); its fields, in this order, are the file's columns. Null where the
    level has no such number (NaN in the analysis, an empty CSV cell); the remaining interval may be infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: str = Field(description="The level's slug.")
    value: str = Field(description="The swept value, as JSON text.")
    suite: str = Field(description="The level's suite.")
    report: str | None = Field(description="The level's report node id.")
    n_bases: int | None = Field(description="Teacher bases of the same-model relation.")
    diagonal_mean: float | None = Field(description="Same-model pairs' mean effect (log-odds or the suite's metric).")
    diagonal_ci_low: float | None = Field(description="Its 95% CI over bases, low.")
    diagonal_ci_high: float | None = Field(description="Its 95% CI over bases, high.")
    gamma: float | None = Field(description="The design-respecting γ (fit.json primary).")
    gamma_ci_low: float | None
    gamma_ci_high: float | None
    gamma_p: float | None = Field(ge=0, le=1)
    gamma_method: str | None = Field(description="How γ's p and CI were computed.")
    transfer_ratio: float | None = Field(description="Mean over same-model pairs of effect ÷ teacher contrast.")
    remaining: float | None = Field(description="Transfer remaining: D_level / D_reference (1 at the reference).")
    remaining_ci_low: float | None = Field(description="Its Fieller 95% interval over teacher replicates (may be -inf).")
    remaining_ci_high: float | None = Field(description="High end (may be +inf).")
    remaining_df: float | None = Field(description="Degrees of freedom of the interval's t.")
    remaining_units: int | None = Field(description="Teacher replicates behind the interval.")
    d_level: float | None = Field(description="The level's same-model mean contrast D.")
    d_reference: float | None = Field(description="The reference level's D.")


#: The columns of ``summary.csv``, in order (one home: :class:`SummaryRow`).
COLUMNS: tuple[str, ...] = tuple(SummaryRow.model_fields)
_TEXT = frozenset(n for n, f in SummaryRow.model_fields.items() if f.annotation in (str, str | None))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``sweep.json``, with ``$defs.SummaryRow`` for a row of ``summary.csv``."""
    doc = SweepSummary.model_json_schema()
    doc["$defs"] = {**doc.get("$defs", {}), "SummaryRow": SummaryRow.model_json_schema()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "subliminal-bench/sweep.schema.json",
            "version": SWEEP_SCHEMA_VERSION, **doc}


def schema_text() -> str:
    """The schema file's text: pretty, key-sorted, one final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def summary_rows(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """``summary.csv``'s header and rows, typed as :class:`SummaryRow` reads them: an empty cell is None, a cell of
    a numeric column a number (``inf`` included) where it parses as one, text columns as written."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    rows = []
    for cells in reader:
        row: dict[str, Any] = {}
        for name, cell in zip(header, cells, strict=False):
            row[name] = None if cell == "" else cell if name in _TEXT else _number(cell)
        rows.append(row)
    return header, rows


def _number(cell: str) -> Any:
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            continue
    return cell  # not a number: the schema says so


def _errors(where: str, err: ValidationError) -> list[str]:
    return [f"{where}: {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()]


def validate_sweep_summary(folder: Path) -> list[str]:
    """Every problem of the sweep summary in ``folder`` as one line (empty: it is valid).

    Checks ``sweep.json`` against :class:`SweepSummary`; ``summary.csv``'s columns (exactly :data:`COLUMNS`) and
    each row against :class:`SummaryRow`; that the rows are the levels of ``sweep.json`` in its order (level,
    suite, report), that the reference is one of them and its transfer remaining is 1; and, for each level whose
    published folder is beside ``folder``, that its manifest's id is the report the summary names.
    """
    folder = Path(folder)
    problems: list[str] = []
    meta_path, csv_path = folder / SWEEP_JSON, folder / SUMMARY_CSV
    try:
        meta = SweepSummary.model_validate(json.loads(meta_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return [f"{meta_path}: file not found"]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{meta_path}: not valid JSON ({exc.__class__.__name__})"]
    except ValidationError as err:
        return _errors(f"{meta_path}: schema", err)[:_MAX_LINES]
    try:
        header, raw = summary_rows(csv_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{csv_path}: cannot read ({exc.__class__.__name__})"]
    if tuple(header) != COLUMNS:
        return [f"{csv_path}: columns {header} are not the summary's {list(COLUMNS)}"]
    rows: list[SummaryRow] = []
    for i, r in enumerate(raw, 2):
        try:
            rows.append(SummaryRow.model_validate(r))
        except ValidationError as err:
            problems += _errors(f"{csv_path}: line {i}", err)
    if problems:
        return problems[:_MAX_LINES]
    got = [(r.level, r.suite, r.report) for r in rows]
    want = [(lv.level, lv.suite, lv.report) for lv in meta.levels]
    if got != want:
        problems.append(f"{csv_path}: rows (level, suite, report) {got} are not {SWEEP_JSON}'s levels {want}")
    suites = [lv.suite for lv in meta.levels]
    if meta.reference not in suites:
        problems.append(f"{meta_path}: reference {meta.reference!r} is not one of the levels {suites}")
    else:
        ref = next((r for r in rows if r.suite == meta.reference), None)
        if ref is not None and ref.remaining != 1.0:
            problems.append(f"{csv_path}: the reference level {meta.reference} has remaining {ref.remaining}, not 1")
    for lv in meta.levels:
        manifest = folder.parent / lv.suite / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            found = json.loads(manifest.read_text(encoding="utf-8")).get("id")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            problems.append(f"{manifest}: not a readable manifest")
            continue
        if found != lv.report:
            problems.append(f"{meta_path}: level {lv.suite} names report {lv.report}, but its published manifest "
                            f"({manifest}) is report {found}: the summary is stale; `slbench report {meta.sweep}` "
                            "rewrites it")
    return problems[:_MAX_LINES]
