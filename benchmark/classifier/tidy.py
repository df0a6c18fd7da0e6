"""The classifier track's inputs to the analysis: node metrics -> the shared tidy table, plus raw accuracies.

Rows of the tidy table (columns :data:`benchmark.analysis.TIDY_COLUMNS`), one per student replicate:

* ``teacher_trait="aux"``: students distilled through the auxiliary logits only (the subliminal channel);
* ``teacher_trait="all_logits"``: the positive control (all 10 + m logits);
* ``teacher_trait="baseline"``: the untrained student base (``teacher_base=""``, ``relation=""``), the
  reference every effect is measured from (effect = accuracy − reference, i.e. ``control="baseline"``).

``value`` is test accuracy in percent, ``target`` is ``"digits"``, ``metric`` is ``"accuracy"``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from benchmark.analysis import TIDY_COLUMNS
from benchmark.vocabulary import BASELINE

__all__ = ["CHANCE", "METRIC", "TARGET", "reference_accuracy", "teacher_accuracy", "tidy_rows"]

METRIC = "accuracy"
TARGET = "digits"
#: Chance accuracy on 10 balanced classes, in percent.
CHANCE = 10.0


def _id(key: str) -> str:
    """Node id from a store key ``<kind>/<name>-<id>``."""
    return key.rsplit("-", 1)[-1]


def tidy_rows(spec: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Build the tidy table from the report node's spec and every upstream node's metrics.

    Args:
        spec: the report node's spec (cells, bases, teacher nodes, suite name).
        metrics: node key -> that node's ``metrics.json``.

    Returns:
        Student rows (spec's cell order, then seeds), then the untrained bases' rows; columns
        :data:`benchmark.analysis.TIDY_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    common = {"suite": spec["suite"], "track": "classifier", "target": TARGET, "metric": METRIC}
    for cell in spec["cells"]:
        m = metrics[cell["key"]]
        for seed, acc in zip(m["seeds"], m["accuracy"], strict=True):
            rows.append(
                {
                    **common,
                    "teacher_base": cell["teacher_base"],
                    "teacher_trait": cell["teacher_trait"],
                    "student_base": cell["student_base"],
                    "seed": int(seed),
                    "value": float(acc),
                    "relation": cell["relation"],
                    "student_id": _id(cell["key"]),
                    "teacher_id": _id(cell["teacher_key"]),
                }
            )
    for name in spec["students"]:
        key = spec["bases"][name]
        m = metrics[key]
        for seed, acc in zip(m["seeds"], m["accuracy"], strict=True):
            rows.append(
                {
                    **common,
                    "teacher_base": "",
                    "teacher_trait": BASELINE,
                    "student_base": name,
                    "seed": int(seed),
                    "value": float(acc),
                    "relation": "",
                    "student_id": _id(key),
                    "teacher_id": "",
                }
            )
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def teacher_accuracy(spec: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """Teacher name -> its test accuracy per seed (how well the source model learned the task)."""
    return {name: metrics[key]["accuracy"] for name, key in spec["teacher_nodes"].items()}


def reference_accuracy(spec: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """Student base -> the untrained model's test accuracy per seed (the reference effects are measured from)."""
    return {name: metrics[spec["bases"][name]]["accuracy"] for name in spec["students"]}
