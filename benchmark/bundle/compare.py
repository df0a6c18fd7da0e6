"""Compare two bundles: which pairs' estimates moved beyond their confidence intervals.

A pair *moved* when each run's estimate lies outside the other run's 95 % CI. Asking it both ways makes the rule
symmetric (it does not matter which bundle is "before") and conservative: a shift that only one of two
intervals excludes is within the noise the two runs report. Pairs (and placebo rows) are matched by their
``evaluation_name`` (teacher→student/target); rows without an interval in either run (a one-replicate suite)
cannot be judged and are listed apart. γ, the primary fit, is compared by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.bundle.schema import Bundle, ConfidenceInterval

__all__ = ["Comparison", "Estimate", "compare_bundles", "moved"]


@dataclass(frozen=True)
class Estimate:
    """One run's estimate of a pair: the score and its CI (None where undefined)."""

    score: float | None
    lower: float | None
    upper: float | None

    @classmethod
    def of(cls, score: float | None, ci: ConfidenceInterval) -> Estimate:
        return cls(score, ci.lower, ci.upper)

    def has_ci(self) -> bool:
        return None not in (self.score, self.lower, self.upper)

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside this estimate's CI."""
        assert self.lower is not None and self.upper is not None
        return not self.lower <= value <= self.upper


def moved(a: Estimate, b: Estimate) -> bool | None:
    """True when each estimate lies outside the other's CI; None when either has no CI."""
    if not (a.has_ci() and b.has_ci()):
        return None
    assert a.score is not None and b.score is not None
    return a.excludes(b.score) and b.excludes(a.score)


@dataclass
class Comparison:
    """What differs between bundles A and B.

    Attributes:
        moved: pair name -> (A's estimate, B's estimate), for pairs that moved beyond both CIs.
        stable: number of common pairs that did not move.
        undecided: common pairs without a CI in one of the runs.
        only_a, only_b: pairs present in one bundle only.
        gamma: (A's γ, B's γ, whether it moved; None: no CI).
    """

    moved: dict[str, tuple[Estimate, Estimate]] = field(default_factory=dict)
    stable: int = 0
    undecided: list[str] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    gamma: tuple[Estimate, Estimate, bool | None] | None = None


def _cells(bundle: Bundle) -> dict[str, Estimate]:
    return {r.evaluation_name: Estimate.of(r.score_details.score, r.score_details.uncertainty.confidence_interval)
            for r in bundle.evaluation_results}


def compare_bundles(a: Bundle, b: Bundle) -> Comparison:
    """Match the two bundles' pairs by name and classify each (see the module docstring)."""
    ca, cb = _cells(a), _cells(b)
    out = Comparison(only_a=[k for k in ca if k not in cb], only_b=[k for k in cb if k not in ca])
    for name, ea in ca.items():
        eb = cb.get(name)
        if eb is None:
            continue
        verdict = moved(ea, eb)
        if verdict is None:
            out.undecided.append(name)
        elif verdict:
            out.moved[name] = (ea, eb)
        else:
            out.stable += 1
    ga = Estimate.of(a.shared_base.gamma, a.shared_base.uncertainty.confidence_interval)
    gb = Estimate.of(b.shared_base.gamma, b.shared_base.uncertainty.confidence_interval)
    out.gamma = (ga, gb, moved(ga, gb))
    return out
