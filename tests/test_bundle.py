"""Results bundles: schema, export, validation (recomputed statistics, hashes, design), publish-time export, compare.

Every bundle committed under results/ must validate: this is the check CI runs on a submission. The other tests
export fresh bundles (tests/bundle_fixtures.py: the published inputs re-analysed by today's code), so they test the
code whether or not the published folders have been republished since the analysis changed.
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
from tests.bundle_fixtures import fresh_bundle
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


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """Fresh report directories of the default (LM) and classifiers suites, each with its exported bundle.json."""
    root = tmp_path_factory.mktemp("reports")
    return {suite: fresh_bundle(suite, root / suite).parent for suite in ("default", "classifiers")}


@pytest.fixture(scope="module")
def fresh(reports) -> dict[str, dict]:
    """The fresh bundles as JSON, by suite."""
    return {suite: _load(d / BUNDLE) for suite, d in reports.items()}


def test_fresh_bundles_validate_and_carry_the_pair_table(reports, fresh):
    """A freshly exported LM bundle validates (every statistic recomputed, candidates.csv an input) and holds the
    pair table: one row per pair and one placebo row per pair, the primary γ, every analysis table."""
    for directory in reports.values():
        assert validate_bundle_file(directory / BUNDLE) == []
    lm = _bundle(fresh["default"])
    assert lm.schema_version == "2.0"
    assert {"teachers.csv", "candidates.csv", "bases.csv"} <= set(lm.data.tables)
    pairs = frame_of(lm.data.cells)
    trait, placebo = pairs[~pairs["placebo"]], pairs[pairs["placebo"]]
    n = len(lm.suite.report_spec["teachers"]) * len(lm.suite.report_spec["students"])
    assert len(trait) == len(placebo) == n and set(trait["target"]) == {lm.suite.report_spec["traits"][0]}
    assert not trait.duplicated(["teacher", "student"]).any()  # no pair as two mirrored trait cells
    assert set(trait["family"]) == {"same", "sibling", "unrelated"} and set(placebo["family"]) == {"placebo"}
    fit = lm.data.fit
    sb = lm.shared_base
    assert (sb.gamma, sb.p_value) == (fit["primary"]["estimate"], fit["primary"]["p"])
    ci = sb.uncertainty.confidence_interval
    assert (ci.lower, ci.upper) == (fit["primary"]["ci_low"], fit["primary"]["ci_high"])
    assert (sb.placebo_rate, sb.placebo_exact_size) == (fit["placebo"]["rate"], fit["placebo"]["exact_size"])
    assert sb.leave_one_base_out_min == min(fit["primary"]["leave_one_base_out"].values())
    assert lm.metric_config.evaluation_description == fit["contrast_definition"]
    results = {r.evaluation_name: r for r in lm.evaluation_results}
    same = trait[trait["family"] == "same"].iloc[0]
    r = results[f"{same['teacher']}→{same['student']}/{same['target']}"]
    assert (r.family, r.transfer_ratio, r.score_details.q_drift) == ("same", same["transfer_ratio"], same["q_drift"])
    assert r.score_details.uncertainty.num_samples == same["n_treated"]
    assert all(r.trait.startswith("placebo:") for r in lm.evaluation_results if r.placebo)


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


def test_bundles_match_the_json_schema_file(committed, fresh):
    """An independent validator (jsonschema) accepts them against schemas/bundle.schema.json."""
    import jsonschema

    schema = _load(ROOT / "schemas" / "bundle.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    for data in [*committed.values(), *fresh.values()]:
        jsonschema.Draft202012Validator(schema).validate(data)


def _problems(data: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return validate_bundle_file(path)


def _set_cell(data: dict, row: int, column: str, value) -> None:
    cells = data["data"]["cells"]
    cells["rows"][row][cells["columns"].index(column)] = value


def _row_of(data: dict, **match) -> int:
    cells = data["data"]["cells"]
    return next(i for i, r in enumerate(cells["rows"]) if all(r[cells["columns"].index(k)] == v
                                                               for k, v in match.items()))


@pytest.mark.parametrize("suite, match, column", [
    ("classifiers", {"teacher": "cnn-d", "student": "mlp-a"}, "effect"),
    ("default", {"family": "same"}, "effect"),
    ("default", {"family": "sibling"}, "q_drift"),
    ("default", {"family": "placebo"}, "p"),
])
def test_a_tampered_pair_is_rejected_naming_it(fresh, tmp_path, suite, match, column):
    """Any published value of a pair (its effect, its drift-aware q, a placebo row's p) is recomputed: the change is
    named by pair and column, the file no longer matches its manifest sha256, and the content hash breaks."""
    data = copy.deepcopy(fresh[suite])
    row = _row_of(data, **match)
    cols = data["data"]["cells"]["columns"]
    values = data["data"]["cells"]["rows"][row]
    pair = "{}→{}/{}".format(*(values[cols.index(c)] for c in ("teacher", "student", "target")))
    old = values[cols.index(column)]
    _set_cell(data, row, column, old / 2 if column != "effect" else old + 0.5)
    problems = _problems(data, tmp_path)
    named = [p for p in problems if f"pair {pair}: {column} is" in p]
    assert len(named) == 1 and "recomputed from the replicate rows" in named[0], problems
    assert any("pairs.csv differs from the file the report wrote" in p for p in problems)
    assert any("content_hash" in p for p in problems)


def test_the_cli_rejects_a_tampered_bundle_one_line_per_problem(fresh, tmp_path):
    data = copy.deepcopy(fresh["default"])
    row = _row_of(data, teacher="zoo-gpt2", student="zoo-gpt2", placebo=False)
    _set_cell(data, row, "effect", 99.0)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    res = run_cli("validate", str(path))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) >= 3 and all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert any("pair zoo-gpt2→zoo-gpt2/owl: effect is 99" in line for line in lines)


def test_tampered_inputs_change_the_recomputed_pairs(fresh, tmp_path):
    """The replicate rows and the LM's per-candidate table are inputs: editing them moves the recomputed numbers."""
    data = copy.deepcopy(fresh["classifiers"])
    rows = data["data"]["replicate_rows"]
    i = next(k for k, r in enumerate(rows["rows"]) if r[rows["columns"].index("teacher_trait")] == "aux")
    rows["rows"][i][rows["columns"].index("value")] += 40.0
    problems = _problems(data, tmp_path)
    assert any("tidy.csv differs from the file the report wrote" in p for p in problems)
    assert any(p.endswith("recomputed from the replicate rows") and "pair mlp-a→mlp-a/aux: effect" in p
               for p in problems), problems
    data = copy.deepcopy(fresh["default"])
    cand = data["data"]["tables"]["candidates.csv"]
    role, lo = cand["columns"].index("role"), cand["columns"].index("logodds")
    for r in cand["rows"]:
        if r[role] == "student":
            r[lo] = -r[lo]
    problems = _problems(data, tmp_path)
    assert any("candidates.csv differs from the file the report wrote" in p for p in problems)
    assert any(": profile_r is" in p and p.startswith(str(tmp_path)) and "pair " in p for p in problems), problems


def test_views_hashes_versions_and_models_are_checked(fresh, tmp_path):
    data = copy.deepcopy(fresh["classifiers"])
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


def test_schema_errors_are_one_line_each(fresh, tmp_path):
    data = copy.deepcopy(fresh["classifiers"])
    data["surprise"] = 1
    del data["metric_config"]
    problems = _problems(data, tmp_path)
    assert len(problems) == 2 and all(": schema: " in p for p in problems), problems
    assert any("surprise" in p for p in problems) and any("metric_config" in p for p in problems)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert validate_bundle_file(tmp_path / "bad.json")[0].endswith("not valid JSON (line 1: Expecting property name "
                                                                     "enclosed in double quotes)")


def _design(data: dict) -> list[str]:
    from benchmark.tracks import settings_cls

    bundle = _bundle(data)
    info = track_info(bundle.suite.track)
    settings = settings_cls(bundle.suite.track, bundle.suite.spec["settings"], "settings")
    return info.design(frame_of(bundle.data.replicate_rows), frame_of(bundle.data.cells), bundle.suite.report_spec,
                       settings)


def test_missing_placebo_readouts_and_controls_are_problems(fresh):
    data = copy.deepcopy(fresh["default"])
    assert _design(data) == []
    cells = data["data"]["cells"]
    col = {c: cells["columns"].index(c) for c in ("placebo", "n_control", "n_treated", "control_arms", "teacher")}
    cells["rows"] = [r for r in cells["rows"] if not r[col["placebo"]] or r[col["teacher"]] != "zoo-gpt2"]
    first = cells["rows"][0]
    first[col["n_control"]] = 7
    cells["rows"][1][col["n_treated"]] = 3
    cells["rows"][2][col["control_arms"]] = "cat"  # a pair whose A/A arm was left out of its controls
    cells["rows"][2][col["n_control"]] = 4
    problems = _design(data)
    assert any(p.startswith("pair zoo-gpt2→") and "no placebo row with a p-value" in p for p in problems), problems
    assert sum("no placebo row" in p for p in problems) == len(data["suite"]["report_spec"]["students"])
    assert any(p.startswith("pair zoo-qwen-a→zoo-qwen-a/owl: 7 control replicates in arms 'cat+aa:cat'; the "
                            "design has 4 per control arm") for p in problems), problems
    assert any(": 3 treated replicates; the design has 4" in p for p in problems), problems
    assert any(": control arms cat; the design's are cat+aa:cat" in p for p in problems), problems
    data["suite"]["report_spec"]["arms"] = ["owl", "cat"]
    assert any("no placebo readouts: the suite has no A/A arm" in p for p in _design(data))
    data = copy.deepcopy(fresh["classifiers"])
    rows = data["data"]["replicate_rows"]
    trait = rows["columns"].index("teacher_trait")
    rows["rows"] = [r for r in rows["rows"] if r[trait] != "all_logits"]
    assert any("no all-logit positive-control rows" in p for p in _design(data))


def test_publishing_writes_the_bundle_beside_the_suite_and_stays_idempotent(reports, tmp_path):
    from benchmark.publish import publish_dir

    src = tmp_path / "node"
    shutil.copytree(reports["classifiers"], src, ignore=shutil.ignore_patterns(BUNDLE))
    dest = tmp_path / "published" / "classifiers"
    derive = partial(derived_files)
    assert publish_dir(src, dest, derive=derive) is True
    assert (dest / BUNDLE).read_bytes() == (reports["classifiers"] / BUNDLE).read_bytes()
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


def test_compare_lists_pairs_that_moved_beyond_their_cis(fresh):
    a = _bundle(fresh["default"])
    same = compare_bundles(a, a)
    assert not same.moved and same.stable == len(a.evaluation_results) and same.gamma and same.gamma[2] is False
    data = copy.deepcopy(fresh["default"])
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


def test_compare_cli(reports, fresh):
    path = str(reports["default"] / BUNDLE)
    res = run_cli("compare", path, path)
    assert res.returncode == 0, res.stderr
    n, gamma = len(fresh["default"]["evaluation_results"]), fresh["default"]["shared_base"]["gamma"]
    assert f"0 of {n} common pairs moved beyond their CIs" in res.stdout and f"γ: A {gamma:+.3f}" in res.stdout
    # two suites with no model in common say so (issue 24.9)
    other = run_cli("compare", path, str(SUITES / "classifiers" / BUNDLE))
    assert other.returncode == 0 and "no pair in common (the two suites have no model in common)" in " ".join(
        other.stdout.split())


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


def test_sample_log_holds_every_evaluation_checked_against_its_manifest(fresh, tmp_path):
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
    data = copy.deepcopy(fresh["classifiers"])  # any bundle may carry a sample log beside it
    data["detailed_evaluation_results"] = meta.model_dump(mode="json")
    (tmp_path / "samples.jsonl").write_bytes(text.replace(b"stub", b"stud", 1))  # one byte changed
    problems = _problems(data, tmp_path)
    assert len(problems) == 1 and problems[0].endswith("samples.jsonl has another sha256 than the bundle records")
