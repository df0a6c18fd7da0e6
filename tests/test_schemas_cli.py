"""`slbench schema suite|bundle` (issue 24 point 9): the bundle's JSON Schema is the committed one, and the suite
schema types ``settings`` by track, so an editor catches a bad settings key or value before `validate` does."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def suite_schema() -> dict:
    r = run_cli("schema", "suite")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_schema_bundle_is_the_committed_schema() -> None:
    r = run_cli("schema", "bundle")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / "schemas" / "bundle.schema.json").read_text(encoding="utf-8")
    bundle = json.loads((ROOT / "results" / "suites" / "default" / "bundle.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(json.loads(r.stdout)).validate(bundle)


def _suites() -> list[dict]:
    out = []
    for path in sorted((ROOT / "tasks" / "suites").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "track" in data and "sweep" not in data:  # ordinary suites (groups and sweeps are other files)
            out.append(data)
    return out


def test_every_committed_suite_fits_the_typed_schema(suite_schema: dict) -> None:
    validator = jsonschema.Draft202012Validator(suite_schema)
    suites = _suites()
    assert {s["track"] for s in suites} == {"lm", "classifier"}
    for data in suites:
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (data["name"], errors)


@pytest.mark.parametrize("where,value", [
    (("dataset", "top_k"), "many"),          # a number
    (("dataset", "n_kep"), 160),             # a misspelt key
    (("student", "objective"), "kl"),        # sft | distill
    (("bogus",), 1),                          # an unknown settings block
])
def test_the_schema_refuses_bad_settings(suite_schema: dict, where: tuple[str, ...], value: object) -> None:
    data = copy.deepcopy(next(s for s in _suites() if s["name"] == "default"))
    node = data["settings"]
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    assert list(jsonschema.Draft202012Validator(suite_schema).iter_errors(data)), where


def test_settings_follow_the_track(suite_schema: dict) -> None:
    """An LM settings block on a classifier suite is refused (if/then on ``track``)."""
    data = copy.deepcopy(next(s for s in _suites() if s["track"] == "classifier"))
    data["settings"] = {"replicates": 4, "aa_arm": True}
    assert list(jsonschema.Draft202012Validator(suite_schema).iter_errors(data))
