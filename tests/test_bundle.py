"""Results bundles: schema, export, validation (recomputed statistics, hashes, design), publish-time export, compare.

Every bundle committed under results/ must validate: this is the check CI runs on a submission.
"""

from __future__ import annotations

import copy
import json
import shutil
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.bundle import BUNDLE, Bundle, bundle_bytes, export_bundle, validate_bundle_file
from benchmark.bundle.compare import Estimate, compare_bundles, moved
from benchmark.bundle.export import derived_files
from benchmark.bundle.schema import schema_text
from benchmark.bundle.tables import frame_of, read_table, render_csv, table_of
from benchmark.bundle.tracks import track_info
from tests.conftest import ROOT, run_cli

SUITES = ROOT / "results" / "suites"
# Hidden folders are publishing's grace-period copies of replaced results, not published suites.
PUBLISHED = sorted(p.parent for p in SUITES.glob("*/manifest.json") if not p.parent.name.startswith("."))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _bundle(data: dict) -> Bundle:
    return Bundle.model_validate(data)


@pytest.fixture(scope="module")
def committed() -> dict[str, dict]:
    """The committed bundles as JSON, by suite."""
    return {p.name: _load(p / BUNDLE) for p in PUBLISHED}


def test_schema_file_is_generated_from_the_model():
    path = ROOT / "schemas" / "bundle.schema.json"
    assert path.read_text(encoding="utf-8") == schema_text(), "run `python -m benchmark.bundle --write`"


def test_every_published_suite_has_its_current_bundle():
    """Each published suite carries bundle.json, and exporting it again from the published files gives its bytes."""
    assert {p.name for p in PUBLISHED} >= {"default", "classifiers"}
    for directory in PUBLISHED:
        assert (directory / BUNDLE).is_file(), f"{directory}: no bundle.json; run `slbench export {directory.name}`"
        assert bundle_bytes(export_bundle(directory)) == (directory / BUNDLE).read_bytes(), directory.name


@pytest.mark.parametrize("suite", [p.name for p in PUBLISHED])
def test_committed_bundles_validate(suite):
    """CI's submission check: every committed bundle passes `slbench validate` (statistics recomputed)."""
    assert validate_bundle_file(SUITES / suite / BUNDLE) == []


def test_committed_bundles_match_the_json_schema_file(committed):
    """An independent validator (jsonschema) accepts them against schemas/bundle.schema.json."""
    import jsonschema

    schema = _load(ROOT / "schemas" / "bundle.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    for data in committed.values():
        jsonschema.Draft202012Validator(schema).validate(data)


def _problems(data: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return validate_bundle_file(path)


def _set_cell(data: dict, row: int, column: str, value) -> None:
    cells = data["data"]["cells"]
    cells["rows"][row][cells["columns"].index(column)] = value


@pytest.mark.parametrize("suite, row, names", [("classifiers", 3, ("teacher_base", "student_base", "target")),
                                               ("default", 5, ("teacher", "student", "trait"))])
def test_a_tampered_cell_is_rejected_naming_it(committed, tmp_path, suite, row, names):
    data = copy.deepcopy(committed[suite])
    cols = data["data"]["cells"]["columns"]
    values = data["data"]["cells"]["rows"][row]
    cell = "{}→{}/{}".format(*(values[cols.index(c)] for c in names))
    old = values[cols.index("effect")]
    _set_cell(data, row, "effect", old + 0.5)
    problems = _problems(data, tmp_path)
    named = [p for p in problems if f"cell {cell}: effect is" in p]
    assert len(named) == 1 and "recomputed from the replicate rows" in named[0], problems
    assert any("cells.csv differs from the file the report wrote" in p for p in problems)
    assert any("content_hash" in p for p in problems)


def test_the_cli_rejects_a_tampered_bundle_one_line_per_problem(committed, tmp_path):
    data = copy.deepcopy(committed["classifiers"])
    _set_cell(data, 0, "effect", 99.0)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    res = run_cli("validate", str(path))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) >= 3 and all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert any("cell cnn-d→cnn-d/digits: effect is 99" in line for line in lines)


def test_edited_replicate_rows_change_the_recomputed_cells(committed, tmp_path):
    data = copy.deepcopy(committed["classifiers"])
    rows = data["data"]["replicate_rows"]
    i = next(k for k, r in enumerate(rows["rows"]) if r[rows["columns"].index("teacher_trait")] == "aux")
    rows["rows"][i][rows["columns"].index("value")] += 40.0
    problems = _problems(data, tmp_path)
    assert any("tidy.csv differs from the file the report wrote" in p for p in problems)
    assert any(p.endswith("recomputed from the replicate rows") and "cell mlp-a→mlp-a/digits: effect" in p
               for p in problems), problems


def test_views_hashes_versions_and_models_are_checked(committed, tmp_path):
    data = copy.deepcopy(committed["classifiers"])
    data["evaluation_results"][2]["score_details"]["p_value"] = 0.5
    data["shared_base"]["gamma"] = 1.0
    data["provenance"]["versions"]["torch"] = "0.0.1"
    data["models"][0]["entry"]["revision"] = "abc"
    data["suite"]["report_id"] = "0" * 12
    del data["data"]["tables"]["effect_aux.csv"]
    problems = _problems(data, tmp_path)
    name = data["evaluation_results"][2]["evaluation_name"]
    for expected in (f"evaluation_results {name}: score_details.p_value is 0.5", "shared_base.gamma is 1",
                     "inference_engine torch", "model mlp-a: entry_hash is not the hash of its registry entry",
                     "suite.report_id 000000000000 is not the run fingerprint's prefix", "evaluation_id",
                     "data: effect_aux.csv is missing (the report wrote it"):
        assert any(expected in p for p in problems), (expected, problems)


def test_schema_errors_are_one_line_each(committed, tmp_path):
    data = copy.deepcopy(committed["classifiers"])
    data["surprise"] = 1
    del data["metric_config"]
    problems = _problems(data, tmp_path)
    assert len(problems) == 2 and all(": schema: " in p for p in problems), problems
    assert any("surprise" in p for p in problems) and any("metric_config" in p for p in problems)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert validate_bundle_file(tmp_path / "bad.json")[0].endswith("not valid JSON (line 1: Expecting property name "
                                                                     "enclosed in double quotes)")


def _design(data: dict) -> list[str]:
    from benchmark.registry import settings_cls

    bundle = _bundle(data)
    info = track_info(bundle.suite.track)
    settings = settings_cls(bundle.suite.track, bundle.suite.spec["settings"], "settings")
    return info.design(frame_of(bundle.data.replicate_rows), frame_of(bundle.data.cells), bundle.suite.report_spec,
                       settings)


def test_missing_placebo_readouts_and_controls_are_problems(committed):
    data = copy.deepcopy(committed["default"])
    assert _design(data) == []
    cells = data["data"]["cells"]
    placebo, n_ctrl = cells["columns"].index("placebo"), cells["columns"].index("n_control_reps")
    cells["rows"] = [r for r in cells["rows"] if not r[placebo]]
    cells["rows"][0][n_ctrl] = 3
    problems = _design(data)
    assert any("no placebo row with a p-value" in p for p in problems), problems
    assert any(p.startswith("cell zoo-qwen-a→zoo-qwen-a/cat: 3 control replicates") for p in problems), problems
    data["suite"]["report_spec"]["arms"] = ["owl", "cat"]
    assert any("no placebo readouts: the suite has no A/A arm" in p for p in _design(data))
    data = copy.deepcopy(committed["classifiers"])
    rows = data["data"]["replicate_rows"]
    trait = rows["columns"].index("teacher_trait")
    rows["rows"] = [r for r in rows["rows"] if r[trait] != "all_logits"]
    assert any("no all-logit positive-control rows" in p for p in _design(data))


def test_publishing_writes_the_bundle_beside_the_suite_and_stays_idempotent(tmp_path):
    from benchmark.publish import publish_dir

    src = tmp_path / "node"
    shutil.copytree(SUITES / "classifiers", src, ignore=shutil.ignore_patterns(BUNDLE))
    dest = tmp_path / "published" / "classifiers"
    derive = partial(derived_files)
    assert publish_dir(src, dest, derive=derive) is True
    assert (dest / BUNDLE).read_bytes() == (SUITES / "classifiers" / BUNDLE).read_bytes()
    assert publish_dir(src, dest, derive=derive) is False  # unchanged: nothing rewritten
    (dest / BUNDLE).write_text("{}", encoding="utf-8")  # a stale bundle is replaced
    assert publish_dir(src, dest, derive=derive) is True and validate_bundle_file(dest / BUNDLE) == []


def test_export_refuses_a_suite_file_that_did_not_produce_the_results(tmp_path):
    from benchmark.errors import UserError
    from benchmark.registry import Registry

    reg = Registry()
    other = reg.suite("default")[0]
    with pytest.raises(UserError, match="differ from the published report"):
        export_bundle(SUITES / "classifiers", suite_spec=other, registry=reg)


def test_compare_lists_cells_that_moved_beyond_their_cis(committed):
    a = _bundle(committed["classifiers"])
    same = compare_bundles(a, a)
    assert not same.moved and same.stable == len(a.evaluation_results) and same.gamma and same.gamma[2] is False
    data = copy.deepcopy(committed["classifiers"])
    r = data["evaluation_results"][1]
    sd = r["score_details"]
    shift = 10 * (sd["uncertainty"]["confidence_interval"]["upper"] - sd["uncertainty"]["confidence_interval"]["lower"])
    sd["score"] += shift
    sd["uncertainty"]["confidence_interval"]["lower"] += shift
    sd["uncertainty"]["confidence_interval"]["upper"] += shift
    data["evaluation_results"] = data["evaluation_results"][:-1]
    result = compare_bundles(a, _bundle(data))
    assert list(result.moved) == [r["evaluation_name"]]
    assert result.only_a == [a.evaluation_results[-1].evaluation_name] and not result.only_b


def test_compare_cli(tmp_path, committed):
    res = run_cli("compare", "classifiers", str(SUITES / "classifiers" / BUNDLE))
    assert res.returncode == 0, res.stderr
    assert "0 of 36 common cells moved beyond their CIs" in res.stdout and "γ: A +48.059" in res.stdout


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(a=finite, wa=st.floats(0, 10), b=finite, wb=st.floats(0, 10))
def test_moved_is_symmetric_and_never_moves_from_itself(a, wa, b, wb):
    ea, eb = Estimate(a, a - wa, a + wa), Estimate(b, b - wb, b + wb)
    assert moved(ea, eb) == moved(eb, ea)
    assert moved(ea, ea) is False
    assert moved(Estimate(a, None, None), eb) is None


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)  # no control chars


@st.composite
def _frames(draw):
    n = draw(st.integers(0, 6))
    floats = st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.floats(-1e3, 1e3))
    return pd.DataFrame({
        "teacher": draw(st.lists(_text, min_size=n, max_size=n)),
        "student_id": draw(st.lists(st.text("0123456789abcdef", min_size=12, max_size=12), min_size=n, max_size=n)),
        "seed": draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)),
        "value": pd.Series(draw(st.lists(floats, min_size=n, max_size=n)), dtype=float),
        "placebo": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
    })


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=_frames())
def test_tables_give_back_the_published_bytes(frame, tmp_path):
    """CSV -> table -> JSON -> table -> CSV is byte-identical (ids made of digits stay text, floats round-trip)."""
    path = tmp_path / "t.csv"
    expected = frame.to_csv(index=False)
    path.write_text(expected, encoding="utf-8")
    table = read_table(path)
    again = type(table).model_validate_json(table.model_dump_json())
    assert render_csv(again).decode("utf-8") == expected
    if len(frame):
        assert frame_of(again)["student_id"].tolist() == frame["student_id"].tolist()
        assert table_of(frame_of(again)) == again


def _stub_eval(ctx) -> dict:
    """A stage stand-in: evaluation nodes write an eval.json, the others a marker."""
    name = "eval.json" if ctx.node.kind == "eval" else "stub.txt"
    (ctx.out / name).write_text(json.dumps({"labels": ctx.node.spec.get("labels", {}), "role": "stub"}),
                                encoding="utf-8")
    return {}


def test_sample_log_holds_every_evaluation_checked_against_its_manifest(tmp_path):
    import dataclasses

    import yaml

    from benchmark.bundle.export import sample_log
    from benchmark.errors import UserError
    from benchmark.executors.local import run_plan
    from benchmark.registry import Registry
    from benchmark.store import Store
    from benchmark.tracks import track_for

    suite = {"name": "samples", "track": "lm", "teachers": ["zoo-qwen-a"], "students": ["zoo-qwen-a"],
             "traits": ["owl", "cat"], "seeds": 1, "settings": {"replicates": 2}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    reg = Registry()
    spec, settings, _ = reg.suite(str(tmp_path / "s.yaml"))
    nodes = [dataclasses.replace(n, fn=_stub_eval) for n in track_for("lm").build_plan(spec, settings, reg)]
    store = Store(tmp_path / "store")
    run_plan(nodes, store, workers=1)
    report = store.path(nodes[-1])
    text, meta = sample_log(report, store.root)
    rows = [json.loads(line) for line in text.decode().splitlines()]
    evals = [n.key for n in nodes if n.kind == "eval"]
    assert meta.total_rows == len(rows) == len(evals) and [r["node"] for r in rows] == evals
    tampered = store.root / evals[0] / "eval.json"
    tampered.write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="sha256 differs from its manifest"):
        sample_log(report, store.root)
    data = copy.deepcopy(_load(SUITES / "classifiers" / BUNDLE))  # any bundle may carry a sample log beside it
    data["detailed_evaluation_results"] = meta.model_dump(mode="json")
    (tmp_path / "samples.jsonl").write_bytes(text.replace(b"stub", b"stud", 1))  # one byte changed
    problems = _problems(data, tmp_path)
    assert len(problems) == 1 and problems[0].endswith("samples.jsonl has another sha256 than the bundle records")
