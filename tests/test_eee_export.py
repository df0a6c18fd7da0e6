"""``slbench export --format eee``: Every Eval Ever 0.3.0 records, checked offline against the official schema.

The schema is the ``every-eval-ever`` 0.3.0 wheel's ``schemas/eval.schema.json``, kept unchanged (with its MIT
licence) in tests/data/eee/ and pinned by sha256: a new EEE release is a deliberate update of that file, not a
silent drift. The package itself needs Python >= 3.12, so only its schema is used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest

from benchmark.bundle import export_bundle
from benchmark.bundle.eee import EEE_DIR, EEE_SCHEMA_VERSION, eee_records
from benchmark.bundle.export import derived_files
from benchmark.bundle.tables import frame_of, read_table
from benchmark.publish import write_eee
from tests.bundle_fixtures import fresh_report
from tests.conftest import ROOT, run_cli

SCHEMA = ROOT / "tests" / "data" / "eee" / "eval.schema.json"
SCHEMA_SHA256 = "c9c6195aec8a9dfa0b2aba4924ac1aa8a184c9d8ca97cee778cb531088e39b48"
SUITES = ROOT / "results" / "suites"
_UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
#: EEE's datastore layout: data/<collection>/<developer>/<model>/<uuid4>.json.
_PATH = re.compile(rf"data/subliminal-bench/[^/]+/[^/]+/{_UUID4}\.json")


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """Fresh report directories (tests/bundle_fixtures.py) of the default (LM) and classifiers suites."""
    root = tmp_path_factory.mktemp("eee")
    return {suite: fresh_report(suite, root / suite) for suite in ("default", "classifiers")}


def _problems(validator, record: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(record)]


def test_the_official_schema_is_pinned_with_its_licence():
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, "tests/data/eee/eval.schema.json changed"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["version"] == EEE_SCHEMA_VERSION == "0.3.0"
    licence = (SCHEMA.parent / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in licence and "Copyright (c) 2026 EvalEval" in licence


@pytest.mark.parametrize("suite", ["default", "classifiers"])
def test_records_validate_and_carry_the_pair_table_and_gamma(reports, validator, suite):
    bundle = export_bundle(reports[suite])
    records = eee_records(bundle)
    students = [m for m in bundle.models if "student" in m.roles]
    assert len(records) == len(students) == len({r["model_info"]["id"] for r in records.values()})
    pairs = frame_of(read_table(reports[suite] / "pairs.csv"))
    primary = json.loads((reports[suite] / "fit.json").read_text(encoding="utf-8"))["primary"]
    seen = 0
    for path, record in records.items():
        assert _PATH.fullmatch(path), path
        assert _problems(validator, record) == [], path
        assert record["schema_version"] == "0.3.0"
        context = record["source_metadata"]["additional_details"]
        assert float(context["shared_base_gamma"]) == primary["estimate"]
        assert float(context["shared_base_gamma_p_value"]) == primary["p"]
        assert float(context["shared_base_gamma_ci_lower"]) == primary["ci_low"]
        info = record["model_info"]["additional_details"]
        assert info["deployment_type"] == "self_deployed" and info["model_availability"] == "open_weights"
        student = record["model_info"]["name"]
        mine = pairs[pairs["student"] == student]
        assert len(record["evaluation_results"]) == len(mine)
        for result, row in zip(record["evaluation_results"], mine.to_dict(orient="records"), strict=True):
            score = result["score_details"]
            assert score["score"] == row["effect"]
            ci = score["uncertainty"]["confidence_interval"]
            assert (ci["lower"], ci["upper"], ci["confidence_level"]) == (row["ci_low"], row["ci_high"], 0.95)
            assert float(score["details"]["p_value"]) == row["p"]
            assert float(score["details"]["q_value"]) == row["q"]
            assert score["details"]["teacher"] == row["teacher"] and score["details"]["student"] == student
            placebo = str(row["placebo"]) == "True"
            assert result["metric_config"]["metric_id"] == ("subliminal-bench.placebo_effect" if placebo
                                                             else "subliminal-bench.pair_effect")
            seen += 1
    assert seen == len(pairs)


@pytest.mark.parametrize("tamper, where", [
    (lambda r: r["evaluation_results"][0]["score_details"].update(score="0.16"), "score"),
    (lambda r: r["evaluation_results"][0]["score_details"]["uncertainty"]["confidence_interval"].pop("upper"),
     "upper"),
    (lambda r: r["evaluation_results"][0]["metric_config"].pop("lower_is_better"), "lower_is_better"),
    (lambda r: r["model_info"]["additional_details"].update(deployment_type="on_a_laptop"), "on_a_laptop"),
    (lambda r: r["source_metadata"]["additional_details"].update(shared_base_gamma=0.32), "0.32"),
    (lambda r: r.update(primary_gamma=0.32), "primary_gamma"),
    (lambda r: r.pop("model_info"), "model_info"),
])
def test_a_tampered_record_fails_the_schema(reports, validator, tamper, where):
    record = copy.deepcopy(next(iter(eee_records(export_bundle(reports["default"])).values())))
    assert _problems(validator, record) == []
    tamper(record)
    problems = _problems(validator, record)
    assert problems and any(where in p for p in problems), problems


def test_export_writes_beside_the_bundle_is_idempotent_and_drops_stale_records(reports, validator, tmp_path):
    """Into a published folder (here a copy): under the publish lock, eee/ replaced whole, bundle.json untouched."""
    folder = tmp_path / "default"
    shutil.copytree(reports["default"], folder)
    (folder / "bundle.json").write_text("{}", encoding="utf-8")  # --format eee never writes the bundle
    line = write_eee(folder, folder)
    assert line.startswith(f"wrote {folder / EEE_DIR}: 6 Every Eval Ever 0.3.0 records")
    files = sorted(p.relative_to(folder / EEE_DIR).as_posix() for p in (folder / EEE_DIR).rglob("*") if p.is_file())
    assert len(files) == 6 and all(_PATH.fullmatch(f) for f in files), files
    for f in files:
        assert _problems(validator, json.loads((folder / EEE_DIR / f).read_text(encoding="utf-8"))) == []
    assert (folder / "bundle.json").read_text(encoding="utf-8") == "{}"
    assert write_eee(folder, folder).startswith("up to date:")
    stale = folder / EEE_DIR / "data" / "subliminal-bench" / "old" / "model" / "x.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}", encoding="utf-8")
    assert write_eee(folder, folder).startswith("wrote") and not stale.exists()
    # Publishing (and plain `slbench export`) regenerate an eee/ folder that is already there, same bytes.
    derived = derived_files(folder, folder)
    assert {n for n in derived if n.startswith(f"{EEE_DIR}/")} == {f"{EEE_DIR}/{f}" for f in files}
    assert all((folder / n).read_bytes() == b for n, b in derived.items() if n.startswith(f"{EEE_DIR}/"))


def test_the_published_default_suite_exports(validator, tmp_path):
    if not (SUITES / "default" / "manifest.json").is_file():
        pytest.skip("results/suites/default is being republished")
    out = tmp_path / "eee"
    write_eee(SUITES / "default", SUITES / "default", out)
    records = sorted(out.rglob("*.json"))
    assert records and all(_problems(validator, json.loads(p.read_text(encoding="utf-8"))) == [] for p in records)


def test_cli_format_eee_and_an_unknown_format(reports, validator, tmp_path):
    res = run_cli("export", "default", "--format", "csv")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == ["error: --format 'csv': unknown format; use bundle or eee"]
    out = tmp_path / "records"
    res = run_cli("export", "default", "--from", str(reports["default"]), "--out", str(out), "--format", "eee")
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}: 6 Every Eval Ever 0.3.0 records" in res.stdout
    records = sorted(out.rglob("*.json"))
    assert len(records) == 6
    assert all(_problems(validator, json.loads(p.read_text(encoding="utf-8"))) == [] for p in records)
