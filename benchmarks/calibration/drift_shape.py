"""How much of the unrelated pairs' drift the arms' dataset shapes predict (docs/calibration.md, round 2).

Usage::

    python benchmarks/calibration/drift_shape.py REPORT_DIR [--feature n_rows|tokens_per_row]

REPORT_DIR holds a finished LM report's ``tidy.csv`` and ``teachers.csv`` (a published suite folder, or a report node
in the store for a ``--no-publish`` run). Per pair (teacher base i, student base j), on the replicate-level contrast
W = L(owl) − L(cat) of each student (``logodds`` rows):

- the slope b of W on the dataset feature (rows, or completion tokens per row), fitted on the **control arms only**
  (cat and A/A: eight teachers of one trait, so the slope is free of the trait's own effect);
- the shape-predicted drift b × (mean feature of the owl arm − mean of its controls);
- the observed pair effect, mean W of the owl arm minus the mean of its controls.

Printed per relation: the correlation of predicted with observed effects and their RMS before and after subtracting
the prediction. Descriptive only (one seed, slopes from 8 points each): a correlation near 0 says shape does not drive
the drift; a high one says arms of unequal shape move every student, related or not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def replicate_contrasts(report: Path, feature: str) -> pd.DataFrame:
    """One row per (teacher base, arm, replicate, student base): W and the dataset feature."""
    tidy = pd.read_csv(report / "tidy.csv")
    tidy = tidy[(tidy.teacher_trait != "baseline") & (tidy.metric == "logodds")]
    keys = ["teacher_base", "teacher_trait", "replicate", "student_base", "relation"]
    w = tidy.pivot_table(index=keys, columns="target", values="value").reset_index()
    w["W"] = w["owl"] - w["cat"]
    teachers = pd.read_csv(report / "teachers.csv").drop_duplicates(["teacher_base", "teacher_trait", "replicate"])
    return w.merge(teachers[["teacher_base", "teacher_trait", "replicate", feature]],
                   on=["teacher_base", "teacher_trait", "replicate"])


def shape_prediction(w: pd.DataFrame, feature: str) -> pd.DataFrame:
    """Per pair: the control arms' slope of W on ``feature`` times the owl arm's imbalance, and the observed effect."""
    out = []
    for (tb, sb), g in w.groupby(["teacher_base", "student_base"]):
        control, owl = g[g.teacher_trait != "owl"], g[g.teacher_trait == "owl"]
        if control[feature].std() == 0:
            continue
        slope = np.polyfit(control[feature], control.W, 1)[0]
        out.append({"teacher": tb, "student": sb, "relation": g.relation.iloc[0],
                    "predicted": slope * (owl[feature].mean() - control[feature].mean()),
                    "observed": owl.W.mean() - control.W.mean()})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--feature", default="n_rows", choices=["n_rows", "tokens_per_row"])
    args = ap.parse_args()
    pred = shape_prediction(replicate_contrasts(args.report, args.feature), args.feature)
    print(f"{args.report}: feature {args.feature}")
    print("relation   pairs  corr(pred, obs)  RMS observed  RMS after removing the prediction")
    if pred.empty:
        print("no pair has control datasets of different shapes (rows of one length: nothing to predict)")
        return
    for rel, g in pred.groupby("relation"):
        r = np.corrcoef(g.predicted, g.observed)[0, 1]
        rms = np.sqrt((g.observed ** 2).mean())
        resid = np.sqrt(((g.observed - g.predicted) ** 2).mean())
        print(f"{rel:<10} {len(g):>5}  {r:>15.3f}  {rms:>12.3f}  {resid:>12.3f}")


if __name__ == "__main__":
    main()
