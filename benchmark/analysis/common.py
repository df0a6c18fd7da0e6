"""Helpers every analysis module shares: option checks, one-value checks, base ordering, a NaN-safe mean."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from benchmark.errors import UserError

__all__ = ["ALTERNATIVES", "check_choice", "mean_or_nan", "ordered_levels", "require_single"]

#: Directions of every test in the package.
ALTERNATIVES = ("greater", "less", "two-sided")


def check_choice(name: str, value: str, allowed: Iterable[str]) -> None:
    """Raise a :class:`UserError` naming the allowed values unless ``value`` is one of them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")


def require_single(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """Raise a :class:`UserError` if any of ``cols`` (where present) holds more than one value."""
    for col in cols:
        if col in frame.columns and frame[col].nunique() > 1:
            vals = ", ".join(sorted(map(str, frame[col].unique())))
            raise UserError(f"{what}: several {col} values ({vals}); filter to one {col} first")


def ordered_levels(values: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """Distinct values in registry order first, then any others sorted (never plain alphabetical order)."""
    present = set(values)
    head = [b for b in (order or []) if b in present]
    return head + sorted(present - set(head))


def mean_or_nan(v: np.ndarray) -> float:
    """Mean of ``v``, NaN when it is empty (numpy would warn and return NaN)."""
    return float(np.mean(v)) if len(v) else float("nan")
