"""The calibration table of docs/calibration.md, read from finished pilot reports in a store.

Usage::

    python benchmarks/calibration/table.py benchmarks/calibration/calib-a.yaml [more suite YAMLs] --store /work/store

For each suite it plans the suite (nothing runs), finds its report node in the store and prints, per base: the
diagonal pair's effect W with its CI, the transfer ratio with its CI, p, q_drift and the verdict (bases.csv); the
drift of the unrelated family (tau, mean and RMS of the unrelated effects, fit.json); the A/A placebo rate beside
the test's exact size; the decision rule's two counts (ratio CI > 0; q_drift < 0.05); and the dose check of item 3:
per teacher base, the spread of completion tokens over every dataset of every arm (teachers.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmark.registry import Registry  # noqa: E402
from benchmark.store import Store  # noqa: E402
from benchmark.tracks import track_for  # noqa: E402


def num(value: object, spec: str = ".3f") -> str:
    """A number formatted, or 'n/a' (None, '', NaN: e.g. no drift estimate in a block without unrelated pairs)."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if x != x else format(x, spec)


def report_dir(suite: str, store: Store) -> Path:
    reg = Registry()
    spec, settings, _ = reg.suite(suite)
    nodes = track_for(spec.track).build_plan(spec, settings, reg)
    report = next(n for n in nodes if n.kind == "report")
    if not store.is_done(report):
        raise SystemExit(f"{suite}: report node {report.key} is not built in {store.root}; run the suite first")
    return store.path(report)


def find(folder: Path, name: str) -> Path:
    hits = sorted(folder.rglob(name))
    if not hits:
        raise SystemExit(f"{folder}: no {name}")
    return hits[0]


def dose_spread(path: Path) -> dict[str, tuple[int, int]]:
    """Per teacher base: (min, max) completion tokens over its datasets (one row per dataset)."""
    seen: dict[tuple[str, str, str], int] = {}
    for r in csv.DictReader(path.open(encoding="utf-8")):
        seen[(r["teacher_base"], r["teacher_trait"], r["replicate"])] = int(r["completion_tokens"])
    out: dict[str, list[int]] = {}
    for (base, _, _), tok in seen.items():
        out.setdefault(base, []).append(tok)
    return {b: (min(v), max(v)) for b, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="+", help="suite YAML paths (or names)")
    ap.add_argument("--store", type=Path, default=ROOT / "results" / "store")
    args = ap.parse_args()
    store = Store(args.store)
    for suite in args.suites:
        folder = report_dir(suite, store)
        bases = list(csv.DictReader(find(folder, "bases.csv").open(encoding="utf-8")))
        pairs = list(csv.DictReader(find(folder, "pairs.csv").open(encoding="utf-8")))
        fit = json.loads(find(folder, "fit.json").read_text(encoding="utf-8"))
        spread = dose_spread(find(folder, "teachers.csv"))
        drift = fit["drift"]
        print(f"\n## {suite}  (report {folder.name})")
        print(f"drift of the unrelated family: tau {num(drift.get('tau'))}, "
              f"mean {num(drift.get('mean_unrelated'), '+.3f')}, "
              f"rms {num(drift.get('rms_unrelated'))} (n {drift.get('n_unrelated')})")
        plac = [r for r in pairs if r["placebo"] == "True"]
        n_rej = sum(float(r["p"]) <= 0.05 for r in plac)
        size = float(plac[0]["exact_size"]) if plac else float("nan")
        print(f"A/A placebo rows at p <= 0.05: {n_rej}/{len(plac)} ({n_rej / max(1, len(plac)):.1%}; exact size "
              f"{size:.2%})")
        prim = fit["primary"]
        if prim.get("estimate") is not None:  # one-teacher-base (block) reports have no gamma
            print(f"gamma {prim['estimate']:+.3f} [{prim['ci_low']:+.3f}, {prim['ci_high']:+.3f}], p {prim['p']:.4f}")
        sib = [r for r in pairs if r["family"] == "sibling" and r["placebo"] == "False"]
        if sib:
            print("sibling pairs: " + ", ".join(f"{r['teacher']}->{r['student']} {float(r['effect']):+.2f} "
                                                 f"(q_drift {num(r['q_drift'])})" for r in sib))
        print("| base | diagonal W [95% CI] | p | q_drift | transfer ratio [95% CI] | teacher contrast | verdict "
              "| dose tokens min–max |")
        print("|---|---|---|---|---|---|---|---|")
        n_ratio = n_drift = 0
        for b in bases:
            f = {k: float(b[k]) if b[k] not in ("", None) else float("nan")
                 for k in ("effect", "ci_low", "ci_high", "p", "q_drift", "transfer_ratio", "ratio_ci_low",
                           "ratio_ci_high", "teacher_contrast")}
            n_ratio += f["ratio_ci_low"] > 0
            n_drift += f["q_drift"] < 0.05 and f["effect"] > 0
            lo, hi = spread[b["base"]]
            print(f"| {b['base']} | {f['effect']:+.3f} [{f['ci_low']:+.3f}, {f['ci_high']:+.3f}] | {f['p']:.4f} "
                  f"| {num(f['q_drift'], '.4f')} | {f['transfer_ratio']:+.3f} [{f['ratio_ci_low']:+.3f}, "
                  f"{f['ratio_ci_high']:+.3f}] | {f['teacher_contrast']:.2f} | {b['verdict']} | {lo}–{hi} "
                  f"({(hi - lo) / hi:.1%}) |")
        if len(bases) == 6:
            print(f"rule: ratio CI > 0 on {n_ratio}/6 bases, q_drift < 0.05 (effect > 0) on {n_drift}/6 -> "
                  f"{'PASS' if n_ratio >= 5 and n_drift >= 5 else 'fail'}")
        else:  # a block report: tau from its few unrelated pairs, so q_drift is not the suite's; the CI is
            print(f"block of {len(bases)} teacher base(s): ratio CI > 0 on {n_ratio}; q_drift here uses this block's "
                  f"{drift['n_unrelated']} unrelated pairs only")


if __name__ == "__main__":
    main()
