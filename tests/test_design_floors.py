"""What a design can show before any data (benchmark.analysis.design), and that plan/validate say it."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.analysis.design import design_floors, design_lines, gamma_floor, pair_floor

ROOT = Path(__file__).resolve().parents[1]


def test_pair_floors():
    assert pair_floor(4, 8) == pytest.approx(1 / 495)
    assert pair_floor(4, 4) == pytest.approx(2 / 70)
    assert pair_floor(3, 3) == pytest.approx(0.1)


def test_gamma_floor_counts_relabellings_that_tie():
    zoo = {"a": "a", "a-sib": "a", "a-cont": "a", "b": "b", "llama": "llama", "gpt2": "gpt2"}
    bases = list(zoo)
    # only relabellings inside the lineage of three (3!) keep the indicator: a singleton's shared cell is its own
    assert gamma_floor(bases, bases, zoo) == pytest.approx(6 / 720)
    three = {"x": "x", "y": "y", "z": "z"}
    assert gamma_floor(list(three), list(three), three) == pytest.approx(1 / 6)  # the identity of 3! relabellings
    assert gamma_floor(["x", "y"], ["x", "y"], {"x": "x", "y": "y"}) == pytest.approx(0.5)
    assert math.isnan(gamma_floor(["x"], ["y"], {"x": "x", "y": "y"}))  # no shared pair: not identifiable


def test_published_default_floor_matches_the_analysis():
    import json

    fit = json.loads((ROOT / "results/suites/default/fit.json").read_text())
    zoo = {b: b for b in ["zoo-qwen-b", "zoo-llama", "zoo-gpt2"]}
    zoo.update({b: "zoo-qwen-a" for b in ["zoo-qwen-a", "zoo-qwen-a-sib", "zoo-qwen-a-cont"]})
    assert gamma_floor(list(zoo), list(zoo), zoo) == pytest.approx(fit["primary"]["p_floor"])


def test_lines_warn_before_anything_is_spent():
    one = design_floors(["x", "y", "z"], ["x", "y", "z"], {"x": "x", "y": "y", "z": "z"}, 1, 1, placebo=False)
    text = "\n".join(design_lines(one))
    assert "warning: no pair can reach p ≤ 0.05" in text and "warning: γ cannot be shown" in text
    assert "warning: not submittable: 1 replicates" in text and "no A/A arm" in text
    good = design_floors(list("abcdef"), list("abcdef"), {c: c for c in "abcdef"}, 4, 8, placebo=True)
    assert not [line for line in design_lines(good) if line.startswith("warning:")]


def test_validate_and_plan_print_them(tmp_path):
    import yaml

    suite = yaml.safe_load((ROOT / "tasks/suites/default.yaml").read_text())
    suite["name"] = "one-replicate"
    suite["settings"].update(replicates=1, aa_arm=False)
    path = tmp_path / "one-replicate.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "validate", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "warning: no pair can reach p ≤ 0.05 with 1 vs 1 replicates" in text
    assert "warning: not submittable: 1 replicates per arm" in text and "no A/A arm" in text
    # the paper suites are submittable by default: no "not submittable" line
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "validate", str(ROOT / "tasks/suites/paper-gpt.yaml")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and "not submittable" not in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "plan", "default", "--store", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "verdicts: pair test 4 vs 8 replicates, smallest p 0.00202" in out.stdout
    assert "verdicts: γ over 6 teacher bases, smallest teacher-block p 0.008333" in out.stdout


def test_plan_header_names_traits_the_aa_arm_and_the_units(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "plan", "default", "--store", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    head = " ".join(out.stdout.split())
    assert "traits owl, cat + an A/A arm (aa:cat), 4 teacher replicates per arm, 1 student seed per replicate" in head
    assert "1 seeds" not in head
