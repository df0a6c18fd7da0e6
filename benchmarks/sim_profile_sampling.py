"""Sampled vs exact whole-profile correlation: how many answers per model does an API readout need?

The whole-profile correlation of a student is r = corr(x, y) over the 15 candidate animals, with
x_c = teacher log-odds of c minus the control teacher's and y_c = student log-odds of c minus the control
student's (log-odds = logit P(c | candidates), see ``benchmark/lm/tidy.py``). Local models give exact
log-odds; API models only give sampled answers, so each of the four profiles has to be estimated from N
answers per model (counts + 0.5 per candidate). This Monte Carlo simulation asks at which N the sampled r
has the same precision as the exact one: mean within 0.05 and SD across students within 10%.

Usage::

    python benchmarks/sim_profile_sampling.py            # 20,000 simulated students per cell (~10 s)
    python benchmarks/sim_profile_sampling.py --quick    # 2,000 per cell
    python benchmarks/sim_profile_sampling.py --controls 4  # controls = mean of 4 sampled control models

Model (all on the softmax-logit scale over the 15 candidates; see docs/profile_sampling.md):

* base logits ~ U(-0.3, 0.3) per candidate (baseline log-odds about -2.9 to -2.4, P about 1/15);
* every fine-tune adds a drift ~ N(0, 0.1) shared by the trait model and its control (cancels exactly);
* teacher shift: +1.0 on its trait animal, N(0, 0.3) on the 14 others; the control teacher has none;
* "same" student: shift = beta * teacher shift + N(0, 0.2) noise, beta ~ N(0.4, 0.31) per student;
* "unrelated" student: shift = N(0, 0.2) noise only (the teacher's trait does not transfer).

beta's spread and the noise SD are calibrated so that the exact r has mean about 0.5 and SD about 0.38 in
"same" cells and mean about 0 (SD about 0.27) in "unrelated" cells, as measured on the zoo models.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Model", "Stats", "main", "logodds", "pearson_rows", "sampled_logodds", "simulate_truth", "summarise"]

#: Number of candidate animals.
K = 15
#: Fixed seed: the whole run is deterministic.
SEED = 20_260_515
#: Additive prior per candidate when turning counts into log-odds.
PRIOR = 0.5
#: Samples per model shown in the table.
N_TABLE = (100, 300, 1_000, 3_000, 5_000, 10_000, 30_000)
#: Finer, log-spaced grid (8 per decade, 100 .. 100,000) on which the threshold N is searched.
N_SEARCH = tuple(int(float(f"{100 * 10 ** (i / 8):.2g}")) for i in range(25))
#: Precision targets: |mean_sampled - mean_exact| <= MEAN_TOL and |SD_sampled / SD_exact - 1| <= SD_TOL.
MEAN_TOL, SD_TOL = 0.05, 0.10
CELLS = ("same", "unrelated")


@dataclass(frozen=True)
class Model:
    """Parameters of the simulated profiles (logit scale of the softmax over the candidates).

    Attributes:
        base_halfwidth: Base logits are uniform on +-this.
        drift_sd: SD of the fine-tune drift shared by a trait model and its control.
        trait_shift: Teacher's logit shift on its trait animal.
        other_shift_sd: SD of the teacher's shift on each other animal.
        beta_mean: Mean fraction of the teacher's shift a "same" student inherits.
        beta_sd: SD of that fraction across students.
        noise_sd: SD of the student's own per-candidate shift.
    """

    base_halfwidth: float = 0.3
    drift_sd: float = 0.1
    trait_shift: float = 1.0
    other_shift_sd: float = 0.3
    beta_mean: float = 0.4
    beta_sd: float = 0.31
    noise_sd: float = 0.2


@dataclass(frozen=True)
class Stats:
    """Sampled r of one cell at one N, compared with the exact r of the same simulated students.

    Attributes:
        mean: Mean sampled r.
        sd: SD of sampled r across students.
        bias: mean - exact mean.
        ratio: mean / exact mean (the attenuation; NaN when the exact mean is near 0).
        sd_ratio: sd / exact SD.
        extra_var: var(sampled r) - var(exact r).
        noise_sd: SD of (sampled r - exact r) over the same students: the readout's own noise.
        ok: Both precision targets met.
    """

    mean: float
    sd: float
    bias: float
    ratio: float
    sd_ratio: float
    extra_var: float
    noise_sd: float
    ok: bool


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis.

    Args:
        z: Logits, shape (..., K).

    Returns:
        Probabilities of the same shape, summing to 1 over the last axis.
    """
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logodds(p: np.ndarray) -> np.ndarray:
    """logit P(c | candidates), the benchmark's log-odds readout.

    Args:
        p: Probabilities over the candidates, shape (..., K), summing to 1.

    Returns:
        log p - log(1 - p), same shape.
    """
    return np.log(p) - np.log1p(-p)


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of x with the same row of y.

    Args:
        x: Shape (n, K).
        y: Shape (n, K).

    Returns:
        Shape (n,); NaN where a row is constant.
    """
    a = x - x.mean(axis=1, keepdims=True)
    b = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)


def sampled_logodds(rng: np.random.Generator, p: np.ndarray, n: int, copies: int = 1) -> np.ndarray:
    """Log-odds estimated from n sampled answers per model: logit of (count + PRIOR) / (n + K * PRIOR).

    Args:
        rng: Random generator.
        p: True answer distribution per row, shape (rows, K).
        n: Answers sampled per model (answers outside the candidates already discarded).
        copies: Number of independently sampled models whose log-odds are averaged (a mean control profile).

    Returns:
        Estimated log-odds, shape (rows, K).
    """
    out = np.zeros_like(p)
    for _ in range(copies):
        counts = rng.multinomial(n, p)
        out += logodds((counts + PRIOR) / (n + K * PRIOR))
    return out / copies


def simulate_truth(rng: np.random.Generator, n_sim: int, model: Model) -> dict[str, dict[str, np.ndarray]]:
    """True answer distributions of the four models behind each simulated student, per cell.

    Args:
        rng: Random generator.
        n_sim: Simulated students per cell.
        model: Profile parameters.

    Returns:
        cell -> {"teacher", "ctrl_teacher", "student", "ctrl_student"} -> probabilities (n_sim, K).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for cell in CELLS:
        base = rng.uniform(-model.base_halfwidth, model.base_halfwidth, (n_sim, K))
        drift_t = rng.normal(0.0, model.drift_sd, (n_sim, K))
        drift_s = rng.normal(0.0, model.drift_sd, (n_sim, K))
        shift = rng.normal(0.0, model.other_shift_sd, (n_sim, K))
        shift[np.arange(n_sim), rng.integers(0, K, n_sim)] = model.trait_shift
        beta = rng.normal(model.beta_mean, model.beta_sd, n_sim) if cell == "same" else np.zeros(n_sim)
        noise = rng.normal(0.0, model.noise_sd, (n_sim, K))
        out[cell] = {
            "teacher": softmax(base + drift_t + shift),
            "ctrl_teacher": softmax(base + drift_t),
            "student": softmax(base + drift_s + beta[:, None] * shift + noise),
            "ctrl_student": softmax(base + drift_s),
        }
    return out


def exact_r(profiles: dict[str, np.ndarray]) -> np.ndarray:
    """Whole-profile r from exact log-odds (the local-model readout).

    Args:
        profiles: The four true distributions of one cell.

    Returns:
        r per simulated student.
    """
    x = logodds(profiles["teacher"]) - logodds(profiles["ctrl_teacher"])
    y = logodds(profiles["student"]) - logodds(profiles["ctrl_student"])
    return pearson_rows(x, y)


def sampled_r(rng: np.random.Generator, profiles: dict[str, np.ndarray], n: int, controls: int) -> np.ndarray:
    """Whole-profile r from log-odds estimated from n sampled answers per model.

    Args:
        rng: Random generator.
        profiles: The four true distributions of one cell.
        n: Answers per model.
        controls: Sampled control models averaged into each control profile.

    Returns:
        r per simulated student.
    """
    x = sampled_logodds(rng, profiles["teacher"], n) - sampled_logodds(rng, profiles["ctrl_teacher"], n, controls)
    y = sampled_logodds(rng, profiles["student"], n) - sampled_logodds(rng, profiles["ctrl_student"], n, controls)
    return pearson_rows(x, y)


def summarise(r: np.ndarray, r_exact: np.ndarray) -> Stats:
    """Compare sampled and exact r of the same students.

    Args:
        r: Sampled r.
        r_exact: Exact r.

    Returns:
        The comparison; NaN rows (constant profiles) are dropped.
    """
    keep = np.isfinite(r) & np.isfinite(r_exact)
    r, r_exact = r[keep], r_exact[keep]
    mean, sd, mean_e, sd_e = r.mean(), r.std(ddof=1), r_exact.mean(), r_exact.std(ddof=1)
    bias = mean - mean_e
    return Stats(mean=float(mean), sd=float(sd), bias=float(bias),
                 ratio=float(mean / mean_e) if abs(mean_e) > 0.1 else float("nan"),
                 sd_ratio=float(sd / sd_e), extra_var=float(sd**2 - sd_e**2),
                 noise_sd=float((r - r_exact).std(ddof=1)),
                 ok=bool(abs(bias) <= MEAN_TOL and abs(sd / sd_e - 1) <= SD_TOL))


def _fmt(v: float, spec: str) -> str:
    return "—" if not np.isfinite(v) else format(v, spec)


def main(argv: list[str] | None = None) -> None:
    """Simulate, print the table of sampled vs exact r and the N that matches the exact readout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 simulated students per cell instead of 20,000")
    parser.add_argument("--controls", type=int, default=1,
                        help="sampled control models averaged into each control profile (default 1)")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed")
    args = parser.parse_args(argv)
    n_sim = 2_000 if args.quick else 20_000
    model = Model()
    t0 = time.perf_counter()

    truth = simulate_truth(np.random.default_rng([args.seed, 0]), n_sim, model)
    exact = {cell: exact_r(truth[cell]) for cell in CELLS}
    grid = sorted(set(N_TABLE) | set(N_SEARCH))
    stats: dict[tuple[int, str], Stats] = {}
    for n in grid:
        for i, cell in enumerate(CELLS):
            rng = np.random.default_rng([args.seed, 1, n, i])
            stats[n, cell] = summarise(sampled_r(rng, truth[cell], n, args.controls), exact[cell])

    print(f"Whole-profile r, sampled vs exact log-odds: {n_sim:,} simulated students per cell, K={K} candidates, "
          f"prior +{PRIOR}/candidate, controls averaged over {args.controls} sampled model(s), seed {args.seed}")
    print(f"ok = |mean - exact mean| <= {MEAN_TOL} and |SD / exact SD - 1| <= {SD_TOL:.0%}\n")
    head = (f"{'N/model':>8}  {'cell':<9}  {'mean r':>6}  {'SD r':>5}  {'Δmean':>6}  {'mean/ex':>7}  "
            f"{'SD/ex':>5}  {'+var':>6}  {'noise SD':>8}  ok")
    print(head)
    print("-" * len(head))
    for cell in CELLS:
        e = exact[cell]
        print(f"{'exact':>8}  {cell:<9}  {e.mean():+6.3f}  {e.std(ddof=1):5.3f}  {'':>6}  {'':>7}  {'':>5}  "
              f"{'':>6}  {'':>8}")
    for n in N_TABLE:
        for cell in CELLS:
            s = stats[n, cell]
            print(f"{n:>8,}  {cell:<9}  {s.mean:+6.3f}  {s.sd:5.3f}  {s.bias:+6.3f}  {_fmt(s.ratio, '7.2f'):>7}  "
                  f"{s.sd_ratio:5.2f}  {s.extra_var:+6.3f}  {s.noise_sd:8.3f}  {'yes' if s.ok else 'no'}")

    def threshold(cells: tuple[str, ...]) -> int | None:
        """Smallest grid N from which every larger grid N meets both targets in all the given cells."""
        best = None
        for n in reversed(grid):
            if not all(stats[n, c].ok for c in cells):
                break
            best = n
        return best

    print(f"\nThreshold search on {len(grid)} log-spaced N from {grid[0]:,} to {grid[-1]:,}:")
    for cell in CELLS:
        n = threshold((cell,))
        print(f"  {cell:<9}: N >= {n:,}" if n else f"  {cell:<9}: not reached by N = {grid[-1]:,}")
    n_all = threshold(CELLS)
    if n_all:
        s = stats[n_all, "same"]
        print(f"Answer: about {n_all:,} sampled answers per model (each of teacher, control teacher, student, control "
              f"student) give the sampled r the exact readout's precision (same cells at N={n_all:,}: mean "
              f"{s.mean:+.3f} vs {exact['same'].mean():+.3f} exact, SD {s.sd:.3f} vs {exact['same'].std(ddof=1):.3f}, "
              f"per-student readout noise SD {s.noise_sd:.3f}).")
    else:
        print(f"Answer: the targets are not met by N = {grid[-1]:,} answers per model.")
    for tol in (0.10, 0.05):
        n = next((n for n in grid if all(stats[m, c].noise_sd <= tol for m in grid if m >= n for c in CELLS)), None)
        where = f"N >= {n:,}" if n else f"not reached by N = {grid[-1]:,}"
        print(f"Stricter view: per-student readout noise SD(sampled r - exact r) <= {tol:.2f} in both cells: {where}")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
