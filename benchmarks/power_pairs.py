"""The power statement of a published LM suite: what its pair test could detect, and what K would be needed.

For every trait pair of ``results/suites/<suite>/pairs.csv`` it takes the pair's replicate standard deviation of W
(pooled over its treated and control replicates, as published) and prints, for the published design and for larger
ones (K treated against the same ratio of control replicates), the pair test's power at the pair's own observed
effect and at reference effects, and the effect it finds with 80 % power (benchmark.analysis.power: normal
replicate values, the exact two-sided permutation test of the published tables, alpha 0.05).

Reference effects (log-odds of the trait among 15 animals; pass others with --effect NAME=VALUE):
  paper   +2.40: GPT-4.1-nano's owl rate from 12 % to 60 % (docs/research/paper.md), logit(0.60) - logit(0.12)
  smol    +1.15: SmolLM2 -> SmolLM2, real-smol-distill-mini's same-model pair (README)

    python benchmarks/power_pairs.py real-2fam
    python benchmarks/power_pairs.py real-2fam --k 3 4 6 8 12 --n-sim 1000
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.analysis.power import pooled_sd, power_table  # noqa: E402

PAPER = math.log(0.60 / 0.40) - math.log(0.12 / 0.88)
REFERENCES = {"paper": PAPER, "smol": 1.15}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="a published suite folder name under results/suites/ (or a path to one)")
    ap.add_argument("--k", nargs="+", type=int, default=[3, 4, 6, 8], help="treated replicates per design")
    ap.add_argument("--effect", action="append", default=[], metavar="NAME=VALUE", help="another reference effect")
    ap.add_argument("--n-sim", type=int, default=1000, help="simulated designs per power estimate")
    args = ap.parse_args(argv)
    folder = Path(args.suite) if Path(args.suite).is_dir() else ROOT / "results" / "suites" / args.suite
    pairs_csv = folder / "pairs.csv"
    if not pairs_csv.is_file():
        print(f"error: {pairs_csv}: no such file (publish the suite first)", file=sys.stderr)
        return 2
    refs = dict(REFERENCES)
    for item in args.effect:
        name, _, value = item.partition("=")
        try:
            refs[name] = float(value)
        except ValueError:
            print(f"error: --effect {item!r}: expected NAME=VALUE with a number", file=sys.stderr)
            return 2
    pairs = pd.read_csv(pairs_csv)
    pairs = pairs[~pairs["placebo"].astype(bool)]
    print(f"# power of the pair test, {folder.name} (alpha 0.05, two-sided exact permutation, {args.n_sim} "
          "simulated designs each)")
    print("# references: " + ", ".join(f"{n} {v:+.2f}" for n, v in refs.items()))
    for r in pairs.itertuples():
        k, m = int(r.n_treated), int(r.n_control)
        sd = pooled_sd(float(r.sd_treated), float(r.sd_control), k, m)
        print(f"\n{r.teacher} -> {r.student} ({r.relation}): effect {r.effect:+.3f} [{r.ci_low:+.3f}, "
              f"{r.ci_high:+.3f}], p {r.p:.4f}, replicate sd {sd:.3f} ({k} vs {m})")
        if not (math.isfinite(sd) and sd > 0):
            print("  no replicate spread: power is not defined")
            continue
        effects = {"observed": abs(float(r.effect)), **refs}
        ratio = m / k
        designs = [(kk, max(1, round(kk * ratio))) for kk in args.k]
        print("  K vs M  " + "  ".join(f"power@{n:<8}" for n in effects) + "  80% detects")
        for row in power_table(sd, effects, designs, n_sim=args.n_sim):
            cells = "  ".join(f"{row.power[n]:>14.2f}" for n in effects)
            print(f"  {row.k:>2} vs {row.m:<3}{cells}  {row.detectable:>+10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
