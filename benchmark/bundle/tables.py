"""Published CSV/JSON files <-> the bundle's lossless tables and documents, and their byte rendering.

A bundle holds each analysis file as data (:class:`~benchmark.bundle.schema.Table` or a JSON value). Rendering that
data the way :func:`benchmark.analysis.write_analysis` writes it gives back the published file byte for byte, so
a bundle can be checked against the sha256s recorded in its report node's manifest: the bundle's rows are exactly
what the experiment wrote. Text columns are read as text (an id such as ``"012345678901"`` must not become a
number) and floats with ``round_trip`` precision, as :func:`benchmark.analysis.read_analysis` does.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.bundle.schema import Table
from benchmark.errors import UserError

__all__ = ["TEXT_COLUMNS", "document_sha256s", "frame_of", "read_table", "render_csv", "table_of"]

#: Columns that hold text in every published CSV (ids, names, labels); every other column is parsed as numbers.
TEXT_COLUMNS: frozenset[str] = frozenset({
    "suite", "track", "teacher", "student", "trait", "teacher_base", "student_base", "teacher_trait", "target",
    "metric", "relation", "student_id", "teacher_id", "treated", "control", "treated_arm", "control_arms",
    "alternative", "family", "role", "candidate", "base", "verdict",
})


def _is_text(column: str) -> bool:
    return column in TEXT_COLUMNS or column.endswith("_id")


def read_table(path: Path) -> Table:
    """A published CSV as a :class:`Table` (text columns as text, "" in them kept; empty numbers as null)."""
    header = pd.read_csv(path, nrows=0).columns
    text = [c for c in header if _is_text(c)]
    frame = pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False, na_values=[""],
                        float_precision="round_trip")
    for col in text:  # "" is a value in text columns (a baseline's relation), not a missing number
        frame[col] = frame[col].fillna("")
    return table_of(frame)


def table_of(frame: pd.DataFrame) -> Table:
    """A data frame (its index dropped) as a :class:`Table` of JSON scalars; NaN becomes null."""
    rows = [[_scalar(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return Table(columns=[str(c) for c in frame.columns], rows=rows)


def _scalar(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or value is pd.NA:
        return None
    return str(value)


def frame_of(table: Table) -> pd.DataFrame:
    """The data frame a :class:`Table` was made from (null becomes NaN in number columns)."""
    frame = pd.DataFrame([list(r) for r in table.rows], columns=list(table.columns))
    if frame.empty:
        return frame
    for col in frame.columns:
        if _is_text(str(col)):
            frame[col] = frame[col].fillna("").astype(str)
    return frame


def render_csv(table: Table) -> bytes:
    """The CSV bytes of a table, as ``DataFrame.to_csv(index=False)`` writes them (the published format)."""
    if len(table.columns) != len(set(table.columns)):
        raise UserError(f"table has duplicate column names: {table.columns}")
    bad = next((i for i, r in enumerate(table.rows) if len(r) != len(table.columns)), None)
    if bad is not None:
        raise UserError(f"row {bad} has {len(table.rows[bad])} values for {len(table.columns)} columns")
    return frame_of(table).to_csv(index=False).encode("utf-8")


def document_sha256s(document: Any) -> set[str]:
    """sha256s of a JSON document as the analysis writes it: key-sorted, indent 2, with or without a final newline.

    ``fit.json`` has no final newline and the other JSON files have one (:mod:`benchmark.analysis.result`);
    either rendering identifies the document.
    """
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)
    return {hashlib.sha256(t.encode("utf-8")).hexdigest() for t in (text, text + "\n")}
