"""The sweep summary's JSON Schema (schemas/sweep.schema.json, :mod:`benchmark.bundle.sweep`): generated from the
model, met by the published sweeps (checked by an independent validator too), and enforced by `slbench validate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.bundle.sweep import COLUMNS, schema_text, summary_rows, validate_sweep_summary
from benchmark.sweep import SUMMARY_COLUMNS
from tests.conftest import ROOT, run_cli

SWEEPS = ("defenses", "axes")
SCHEMA = ROOT / "schemas" / "sweep.schema.json"


def test_schema_file_is_generated_from_the_model() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), "run `python -m benchmark.bundle --write`"
    assert SUMMARY_COLUMNS == COLUMNS  # summary.csv's columns have one home: the row model
    res = run_cli("schema", "sweep")
    assert res.returncode == 0 and res.stdout == schema_text()


@pytest.mark.parametrize("name", SWEEPS)
def test_published_sweeps_match_the_schema_file(name: str) -> None:
    """An independent validator (jsonschema) accepts sweep.json and every summary.csv row against the file."""
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    folder = ROOT / "results" / "suites" / name
    jsonschema.Draft202012Validator(schema).validate(json.loads((folder / "sweep.json").read_text()))
    header, rows = summary_rows((folder / "summary.csv").read_text())
    row_schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/SummaryRow"}
    assert tuple(header) == COLUMNS and rows
    for row in rows:
        jsonschema.Draft202012Validator(row_schema).validate(row)
    assert validate_sweep_summary(folder) == []


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A copy of the published defenses sweep: its summary and its levels' manifests, side by side."""
    src = ROOT / "results" / "suites"
    shutil.copytree(src / "defenses", tmp_path / "defenses")
    for level in json.loads((src / "defenses" / "sweep.json").read_text())["levels"]:
        (tmp_path / level["suite"]).mkdir()
        shutil.copy(src / level["suite"] / "manifest.json", tmp_path / level["suite"] / "manifest.json")
    return tmp_path / "defenses"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("file", "old", "new", "problem"), [
    ("sweep.json", '"path": "settings.dataset.defense"', '"path": "dataset.defense"', "schema: path: String should match"),
    ("sweep.json", '"report": "e6e053afe3c2"', '"report": 7', "schema: levels.1.report: Input should be a valid string"),
    ("sweep.json", '"reference": "defenses.none"', '"reference": "defenses.nope"', "reference 'defenses.nope' is not one"),
    ("sweep.json", '"sweep": "defenses",', '"sweep": "defenses", "extra": 1,', "schema: extra: Extra inputs"),
    ("summary.csv", "none,\"\"\"none\"\"\",defenses.none,2d0bc92902e3,3,", "none,\"\"\"none\"\"\",defenses.none,2d0bc92902e3,three,",
     "line 2: n_bases: Input should be a valid integer"),
    ("summary.csv", "level,value,", "level,val,", "are not the summary's"),
    ("summary.csv", "defenses.sort,e6e053afe3c2", "defenses.sort,000000000000", "are not sweep.json's levels"),
])
def test_validation_names_each_problem(published: Path, file: str, old: str, new: str, problem: str) -> None:
    assert validate_sweep_summary(published) == []
    _edit(published / file, old, new)
    problems = validate_sweep_summary(published)
    assert problems and any(problem in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_a_summary_older_than_its_levels_is_stale(published: Path) -> None:
    _edit(published.parent / "defenses.sort" / "manifest.json", '"id": "e6e053afe3c2"', '"id": "111111111111"')
    problems = validate_sweep_summary(published)
    assert len(problems) == 1 and "level defenses.sort names report e6e053afe3c2" in problems[0]
    assert "is report 111111111111: the summary is stale; `slbench report defenses`" in problems[0]


def test_the_reference_transfer_remaining_is_one(published: Path) -> None:
    header, rows = summary_rows((published / "summary.csv").read_text())
    assert rows[0]["suite"] == "defenses.none" and rows[0]["remaining"] == 1.0
    _edit(published / "summary.csv", ",1.0,1.0,1.0,30,36,", ",0.9,1.0,1.0,30,36,")
    assert validate_sweep_summary(published) == [
        f"{published / 'summary.csv'}: the reference level defenses.none has remaining 0.9, not 1"]


def test_slbench_validate_takes_a_sweep_summary(published: Path) -> None:
    ok = run_cli("validate", str(ROOT / "results" / "suites" / "defenses"), str(ROOT / "results" / "suites" / "axes"
                                                                               / "sweep.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok — sweep 'defenses' over settings.dataset.defense: 6 levels, reference defenses.none" in ok.stdout
    assert "ok — sweep 'axes'" in ok.stdout
    _edit(published / "summary.csv", "level,value,", "level,val,")
    bad = run_cli("validate", str(published))
    assert bad.returncode == 2 and "are not the summary's" in bad.stdout
