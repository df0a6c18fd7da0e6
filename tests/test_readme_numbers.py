"""The README's numbers for the published `default` (and `real-2fam`'s pair table) equal the published files (DEVELOPERS.md: "The README's numbers
equal the published files'"): the per-base table against ``bases.csv``, the γ headline against ``fit.json``, the
relation table against ``fit.json``'s ``by_relation``. A republication that forgets the README fails here.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from tests.conftest import ROOT

DEFAULT = ROOT / "results" / "suites" / "default"
NUM = r"[+−-]?\d+(?:\.\d+)?(?:e[+−-]?\d+)?"


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### `default` — the embedded zoo")
    return readme[start:readme.index("\n### ", start + 10)]


def _rows(section: str, first: str) -> list[list[str]]:
    """Markdown table rows whose first cell starts with ``first``, bold markers stripped, cells split."""
    out = []
    for line in section.splitlines():
        cells = [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first):
            out.append(cells)
    return out


def _interval(cell: str) -> tuple[float, float, float]:
    m = re.fullmatch(rf"({NUM}) \[({NUM}), ({NUM})\]", cell)
    assert m, cell
    return _num(m[1]), _num(m[2]), _num(m[3])


def test_the_per_base_table_is_bases_csv():
    bases = pd.read_csv(DEFAULT / "bases.csv").set_index("base")
    rows = _rows(_section(), "zoo-")
    assert [r[0].split(" ")[0] for r in rows[:6]] == list(bases.index)
    for cells in rows[:6]:
        b = bases.loc[cells[0].split(" ")[0]]
        assert _interval(cells[1]) == pytest.approx((b.effect, b.ci_low, b.ci_high), abs=5e-4)
        assert _num(cells[2]) == pytest.approx(b.p, abs=5e-4)
        assert _num(cells[3]) == pytest.approx(b.q_drift, rel=0.05, abs=5e-3)
        assert cells[4] == b.verdict
        ratio = (b.transfer_ratio, b.ratio_ci_low, b.ratio_ci_high)
        assert _interval(cells[5]) == pytest.approx(ratio, abs=5e-4)
        assert _num(cells[6]) == pytest.approx(b.teacher_contrast, abs=5e-3)


def test_the_gamma_headline_is_fit_json():
    fit = json.loads((DEFAULT / "fit.json").read_text())
    primary, same = fit["primary"], fit["same"]
    section = _section()
    m = re.search(rf"γ \(shared init\) = ({NUM}) log-odds\*\*\s+\[({NUM}), ({NUM})\]", section)
    assert m, "the γ headline"
    assert tuple(map(_num, m.groups())) == pytest.approx(
        (primary["estimate"], primary["ci_low"], primary["ci_high"]), abs=5e-4)
    m = re.search(rf"permutation p = \*\*({NUM})\*\*", section)
    assert m and _num(m[1]) == pytest.approx(primary["p"], abs=5e-4)
    lobo = primary["leave_one_base_out"]
    assert f"{min(lobo.values()):+.3f} (without {min(lobo, key=lobo.get)})" in section.replace("−", "-")
    m = re.search(rf"same-model indicator only: γ = ({NUM})\s+\[({NUM}), ({NUM})\], p = ({NUM})", section)
    assert m and tuple(map(_num, m.groups())) == pytest.approx(
        (same["estimate"], same["ci_low"], same["ci_high"], same["p"]), abs=5e-4)


def test_the_relation_table_is_fit_json():
    by = json.loads((DEFAULT / "fit.json").read_text())["by_relation"]
    section = _section()
    for label, key in (("same model", "same"), ("sibling", "sibling"), ("unrelated", "unrelated")):
        cells = _rows(section, label)[0]
        r = by[key]
        assert int(cells[1]) == r["n_pairs"]
        assert _num(cells[2]) == pytest.approx(r["mean"], abs=5e-4)
        lo, hi = (_num(x) for x in re.findall(NUM, cells[3])[:2])
        assert (lo, hi) == pytest.approx((r["ci_low"], r["ci_high"]), abs=5e-4)
        lo, hi = (_num(x) for x in re.findall(NUM, cells[4])[:2])
        assert (lo, hi) == pytest.approx((r["base_ci_low"], r["base_ci_high"]), abs=5e-4)
        assert (int(cells[5]), int(cells[6])) == (r["n_p05"], r["n_q05"])
        if key != "unrelated":
            assert int(cells[7]) == r["n_qdrift05"]


def test_the_drift_and_placebo_lines_are_fit_json():
    fit = json.loads((DEFAULT / "fit.json").read_text())
    section = _section()
    assert f"τ = {fit['drift']['tau']:.3f}" in section
    placebo = fit["placebo"]
    assert f"{placebo['n_p05']} of {placebo['n_rows']} A/A rows at p ≤ 0.05 ({100 * placebo['rate']:.1f} %)" in section


def test_the_real_2fam_pair_table_is_pairs_csv():
    pairs = pd.read_csv(ROOT / "results" / "suites" / "real-2fam" / "pairs.csv")
    pairs = pairs[~pairs["placebo"].astype(bool)].set_index(["teacher", "student"])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("**`real-2fam`, published")
    section = readme[start:readme.index("\n## ", start)]
    rows = [r for r in _rows(section, "") if " → " in r[0] and r[0] != "teacher → student"]
    assert len(rows) == len(pairs) == 4
    for cells in rows:
        teacher, student = cells[0].split(" → ")
        p = pairs.loc[(teacher, student)]
        assert cells[1] == p.relation
        assert _interval(cells[2]) == pytest.approx((p.effect, p.ci_low, p.ci_high), abs=5e-4)
        assert _num(cells[3]) == pytest.approx(p.p, abs=5e-4)
        ratio = (p.transfer_ratio, p.ratio_ci_low, p.ratio_ci_high)
        assert _interval(cells[4]) == pytest.approx(ratio, abs=5e-4)
        assert _num(cells[5]) == pytest.approx(p.teacher_contrast, abs=5e-3)
