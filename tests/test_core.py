"""Foundation: hashing, specs, registry validation, the store, and CLI error handling."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.dag import Node, topological_order
from benchmark.errors import UserError
from benchmark.hashing import HASH_VERSION, content_hash, short_id
from benchmark.registry import Registry, load_registry_file, validate_file
from benchmark.specs import Lineage, SuiteSpec
from benchmark.store import MANIFEST, Store
from tests.conftest import ROOT, run_cli


# -- hashing ---------------------------------------------------------------------------------------------------
def test_known_hash_is_pinned():
    # Changing the canonicalisation rule must bump HASH_VERSION: these pins catch silent changes, which would
    # orphan every artifact in every user's store.
    assert HASH_VERSION == "slb-hash-1"
    assert content_hash({"b": 1, "a": [1, 2.5, "x"]}) == "0fc68aea480938789f847e4db011e08b9388ee689e6d8d340f0870088d45f187"
    assert short_id({"a": [1, 2.5, "x"], "b": 1}) == "0fc68aea4809"
    assert Node(kind="student", name="anything", spec={"seed": 0}, fn=_stage_write).id == "e40dd6beb2d1"


def test_spec_hash_stable_and_sensitive():
    a = Lineage(init="x")
    assert a.spec_id == Lineage(init="x").spec_id
    assert a.spec_id != Lineage(init="y").spec_id
    s = SuiteSpec(name="s", track="lm", teachers=["a"], students=["a"], seeds=3)
    assert s.seeds == [0, 1, 2]


def test_node_key_and_topology():
    a = Node(kind="base", name="a", spec={"x": 1}, fn=_stage_write)
    b = Node(kind="teacher", name="b", spec={"base": a.id}, fn=_stage_write, deps=(a.key,))
    assert a.key == f"base/a-{a.id}"
    assert [n.key for n in topological_order([b, a])] == [a.key, b.key]
    # A throughput knob does not change identity.
    assert Node(kind="base", name="a", spec={"x": 1}, fn=_stage_write, unhashed={"batch_size": 8}).id == a.id


# -- registry ------------------------------------------------------------------------------------------------
def test_every_registry_and_task_yaml_validates():
    reg = Registry(ROOT)
    assert reg.models, "model_registry/ is empty"
    for path in sorted((ROOT / "model_registry").glob("*.yaml")):
        assert "ok" in validate_file(path)
    for path in sorted((ROOT / "tasks" / "traits").glob("*.yaml")):
        assert "ok" in validate_file(path)
    for name in reg.suite_names():
        reg.suite(name)  # names resolve, settings validate


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_registry_unknown_key_names_file_and_key(tmp_path):
    p = _write(tmp_path / "fam.yaml", {"family": "fam", "models": [
        {"name": "m1", "provider": "hf", "source": "org/m1", "lineage": {"init": "i1"}, "lora_target": ["q_proj"]}]})
    with pytest.raises(UserError) as e:
        load_registry_file(p)
    msg = str(e.value)
    assert str(p) in msg and "lora_target" in msg and "did you mean 'lora_targets'" in msg and "\n" not in msg


def test_registry_missing_required_field(tmp_path):
    p = _write(tmp_path / "fam.yaml", {"family": "fam", "models": [{"name": "m1", "provider": "hf", "source": "x"}]})
    with pytest.raises(UserError, match=r"fam.yaml: models\[0\] \(m1\): missing required key 'lineage'"):
        load_registry_file(p)


def test_registry_provider_needs_source(tmp_path):
    p = _write(tmp_path / "fam.yaml", {"family": "fam", "models": [{"name": "m1", "provider": "hf",
                                                                     "lineage": {"init": "i"}}]})
    with pytest.raises(UserError, match="missing required key 'source'"):
        load_registry_file(p)


def test_suite_unknown_model_did_you_mean(project_copy):
    reg = Registry(project_copy)
    some = next(iter(reg.models))
    _write(project_copy / "tasks" / "suites" / "bad.yaml",
           {"name": "bad", "track": "lm", "teachers": [some + "x"], "students": [some], "traits": ["owl"], "seeds": 1})
    with pytest.raises(UserError, match=rf"teachers\[0\]: unknown model '{some}x' \(did you mean '{some}'\?\)"):
        reg.suite("bad")


# -- the store ------------------------------------------------------------------------------------------------
def _stage_write(ctx):
    (ctx.out / "payload.txt").write_text(json.dumps(ctx.node.spec))
    return {"ok": True}


def _stage_boom(ctx):
    (ctx.out / "partial.txt").write_text("half")
    raise RuntimeError("boom")


def test_store_build_done_skip_and_atomicity(tmp_path):
    store = Store(tmp_path / "store")
    node = Node(kind="base", name="n", spec={"v": 1}, fn=_stage_write)
    assert not store.is_done(node)
    manifest = store.build(node, {})
    assert store.is_done(node)
    assert manifest.result == {"ok": True} and "payload.txt" in manifest.files
    assert (store.path(node) / "spec.json").exists() and (store.path(node) / "log.txt").exists()
    assert (manifest.git.commit is None or len(manifest.git.commit) == 40) and "pydantic" in manifest.versions
    assert manifest.spec_hash == node.spec_hash and manifest.wall_s >= 0
    # The record on disk is the typed manifest, key for key (schema under its on-disk name).
    on_disk = json.loads((store.path(node) / MANIFEST).read_text())
    assert on_disk == manifest.to_json() and on_disk["schema"] == 1
    # A failing stage leaves nothing in place.
    bad = Node(kind="base", name="bad", spec={"v": 2}, fn=_stage_boom)
    with pytest.raises(Exception, match="boom"):
        store.build(bad, {})
    assert not store.path(bad).exists()
    assert not any((store.root / "base" / ".staging").iterdir())


@pytest.mark.parametrize("content", ["", "{", '{"schema": 1}', "[]", '{"schema": 1, "spec_hash": "x", "kind": "base", "result": {}}'])
def test_corrupt_manifest_is_a_user_error(tmp_path, content):
    store = Store(tmp_path / "store")
    node = Node(kind="base", name="n", spec={"v": 1}, fn=_stage_write)
    store.build(node, {})
    (store.path(node) / MANIFEST).write_text(content)
    with pytest.raises(UserError) as e:
        store.is_done(node)
    assert str(store.path(node)) in str(e.value)


# -- CLI -----------------------------------------------------------------------------------------------------
NO_TORCH = "import sys, runpy; sys.argv = ['slbench'] + sys.argv[1:]; " \
           "from benchmark.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n" \
           "bad = [m for m in ('torch', 'transformers', 'lm_eval', 'peft') if m in sys.modules]\n" \
           "print('HEAVY:', bad)\nsys.exit(code)"


@pytest.mark.parametrize("args", [["models"], ["plan", "default"], ["validate", "model_registry/zoo.yaml"], ["tasks"]])
def test_light_commands_do_not_import_torch(args, tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, "-c", NO_TORCH, *args, *(["--store", str(tmp_path)] if args[0] == "plan" else [])],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY: []" in r.stdout, r.stdout


def test_plan_counts_for_3x3x2x2(project_copy, tmp_path):
    reg = Registry(project_copy)
    names = [m for m, s in reg.models.items() if s.provider == "zoo"][:3]
    traits = [t for t in reg.traits if not reg.trait(t).is_misalignment][:2]  # a suite never mixes the two kinds
    _write(project_copy / "tasks" / "suites" / "grid.yaml",
           {"name": "grid", "track": "lm", "teachers": names, "students": names, "traits": traits, "seeds": 2,
            "settings": {"dataset": {"n_prompts": 50, "n_keep": 20}}})
    t0 = time.time()
    r = run_cli("plan", "grid", "--store", str(tmp_path / "store"), env={"SLBENCH_ROOT": str(project_copy)})
    elapsed = time.time() - t0
    assert r.returncode == 0, r.stderr
    counts = {}
    for line in r.stdout.splitlines():
        parts = line.replace("│", " ").split()
        if len(parts) == 4 and parts[1].isdigit():
            counts[parts[0]] = tuple(int(x) for x in parts[1:])
    # 3 bases; 3 × 2 trait arms (other-trait controls, 1 replicate) teachers and datasets; 6 datasets × 3 students
    # × 2 seeds students; evals: 3 baselines + 6 teachers + 36 students; 1 report.
    assert counts["base"] == (3, 0, 3)
    assert counts["teacher"] == (6, 0, 6)
    assert counts["dataset"] == (6, 0, 6)
    assert counts["student"] == (36, 0, 36)
    assert counts["eval"] == (45, 0, 45)
    assert counts["report"] == (1, 0, 1)
    print(f"plan wall time incl. interpreter start: {elapsed:.2f}s")


def _suite(project_copy, name, data):
    return _write(project_copy / "tasks" / "suites" / f"{name}.yaml", data)


def _assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def test_cli_bad_inputs_exit_2_one_line_nothing_written(project_copy, tmp_path):
    env = {"SLBENCH_ROOT": str(project_copy)}
    store = tmp_path / "store"
    reg = Registry(project_copy)
    zoo = [m for m, s in reg.models.items() if s.provider == "zoo"][:2]
    trait = next(iter(reg.traits))
    # unknown key in a registry file
    bad_reg = _write(project_copy / "model_registry" / "zz-bad.yaml", {"family": "zz", "models": [
        {"name": "zz1", "provider": "hf", "source": "o/zz", "lineage": {"init": "zz"}, "dtpye": "bfloat16"}]})
    r = run_cli("validate", str(bad_reg), env=env)
    _assert_one_line_error(r, str(bad_reg), "dtpye", "did you mean 'dtype'")
    r = run_cli("plan", "default", "--store", str(store), env=env)  # the whole registry is checked on load
    _assert_one_line_error(r, "zz-bad.yaml", "dtpye")
    bad_reg.unlink()
    # missing required field
    miss = _write(project_copy / "model_registry" / "zz-miss.yaml",
                  {"family": "zz", "models": [{"name": "zz1", "provider": "hf", "source": "o/zz"}]})
    _assert_one_line_error(run_cli("validate", str(miss), env=env), "zz-miss.yaml", "missing required key 'lineage'")
    miss.unlink()
    # unknown model / trait in a suite
    _suite(project_copy, "s1", {"name": "s1", "track": "lm", "teachers": [zoo[0] + "-typo"], "students": zoo,
                                "traits": [trait], "seeds": 1})
    _assert_one_line_error(run_cli("run", "s1", "--store", str(store), env=env), "s1.yaml", "teachers[0]",
                           "did you mean")
    _suite(project_copy, "s2", {"name": "s2", "track": "lm", "teachers": zoo, "students": zoo,
                                "traits": [trait + "x"], "seeds": 1})
    _assert_one_line_error(run_cli("run", "s2", "--store", str(store), env=env), "traits[0]", "unknown trait")
    # non-numeric size
    _suite(project_copy, "s3", {"name": "s3", "track": "lm", "teachers": zoo, "students": zoo, "traits": [trait],
                                "seeds": 1, "settings": {"dataset": {"n_prompts": "lots"}}})
    _assert_one_line_error(run_cli("run", "s3", "--store", str(store), env=env), "s3.yaml", "dataset.n_prompts")
    # unknown suite
    _assert_one_line_error(run_cli("plan", "defualt", "--store", str(store), env=env), "unknown suite", "did you mean 'default'")
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*")), "bad input wrote files"


def test_cli_corrupt_manifest_exit_2(project_copy, tmp_path):
    env = {"SLBENCH_ROOT": str(project_copy)}
    store = tmp_path / "store"
    reg = Registry(project_copy)
    from benchmark.tracks import track_for

    spec, settings, _ = reg.suite("default")
    nodes = track_for(spec.track).build_plan(spec, settings, reg)
    target = store / nodes[0].key
    target.mkdir(parents=True)
    (target / MANIFEST).write_text('{"schema": 1, "spec_ha')  # truncated
    before = sorted(str(p) for p in store.rglob("*"))
    r = run_cli("run", "default", "--store", str(store), env=env)
    _assert_one_line_error(r, str(target / MANIFEST), "corrupt or truncated")
    assert sorted(str(p) for p in store.rglob("*")) == before


def test_cli_help_teaches():
    r = run_cli("--help")
    assert r.returncode == 0 and "plan" in r.stdout and "run" in r.stdout and "validate" in r.stdout
    r = run_cli("run", "--help")
    assert "--workers" in r.stdout and "resume" in r.stdout.lower()


def test_suite_seed_shifts_every_classifier_seed():
    """``seed`` in a suite moves every replicate to fresh randomness; 0 keeps the listed seeds (and ids)."""
    from benchmark.registry import Registry
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, _ = reg.suite("classifiers")
    track = track_for(spec.track)
    plain = track.build_plan(spec, settings, reg)
    moved = track.build_plan(spec.model_copy(update={"seed": 7}), settings, reg)
    base = next(n for n in plain if n.kind == "base")
    moved_base = next(n for n in moved if n.kind == "base" and n.name == base.name)
    assert base.spec["seeds"] == list(spec.seeds)
    assert len(set(moved_base.spec["seeds"])) == len(spec.seeds)
    assert not set(moved_base.spec["seeds"]) & set(spec.seeds)
    assert {n.id for n in plain}.isdisjoint({n.id for n in moved})


LATE_FAILURES = [
    # (what, settings or top-level overrides, text the one-line error must contain)
    ("infinite learning rate", {"settings": {"student": {"train": {"lr": float("inf")}}}}, "finite"),
    ("duplicate seeds", {"seeds": [0, 0]}, "listed twice"),
    ("a trillion seeds", {"seeds": 10**12}, "seeds must be a count from 1 to 1000"),
    ("unknown eval task", {"settings": {"eval": {"tasks": ["animal_logprobs"]}}}, "did you mean 'animal_logprob'"),
    ("huge dataset", {"settings": {"dataset": {"n_prompts": 10**12}}}, "dataset.n_prompts"),
    ("300-character name", {"name": "x" * 300}, "name"),
]


@pytest.mark.parametrize("what,override,needle", LATE_FAILURES, ids=[c[0] for c in LATE_FAILURES])
def test_inputs_that_used_to_fail_after_compute_are_refused_at_plan(project_copy, tmp_path, what, override, needle):
    """Each of these once passed `plan` and failed only after teachers and students had trained."""
    env = {"SLBENCH_ROOT": str(project_copy)}
    reg = Registry(project_copy)
    zoo = [m for m, s in reg.models.items() if s.provider == "zoo"][:2]
    suite = {"name": "late", "track": "lm", "teachers": zoo, "students": zoo, "traits": ["owl", "cat"], "seeds": 1}
    for key, value in override.items():
        suite[key] = value if key != "settings" else {**suite.get("settings", {}), **value}
    path = project_copy / "tasks" / "suites" / "late.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    store = tmp_path / "store"
    r = run_cli("plan", "late", "--store", str(store), env=env)
    _assert_one_line_error(r, needle)
    assert not store.exists()


def test_non_utf8_suite_and_store_that_is_a_file_are_one_line_errors(project_copy, tmp_path):
    env = {"SLBENCH_ROOT": str(project_copy)}
    bad = project_copy / "tasks" / "suites" / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\ntrack: lm\n".encode("latin-1"))
    _assert_one_line_error(run_cli("validate", str(bad), env=env), "latin1.yaml", "not UTF-8")
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    _assert_one_line_error(run_cli("plan", "classifiers", "--store", str(afile), env=env), "--store", "is a file")


@pytest.mark.parametrize("args", [["frobnicate"], ["run", "default", "--workers", "0"],
                                  ["run", "default", "--workers", "abc"], ["run", "--bogus"]])
def test_usage_errors_exit_2_without_a_traceback(args):
    r = run_cli(*args)
    _assert_one_line_error(r, "error:", "--help")


def test_a_suite_file_cannot_publish_over_another_suites_results(project_copy, tmp_path):
    """results/suites/<name>/ belongs to tasks/suites/<name>.yaml: a file given by path reusing the name is refused."""
    env = {"SLBENCH_ROOT": str(project_copy)}
    (project_copy / "results" / "suites" / "classifiers").mkdir(parents=True)
    impostor = _write(tmp_path / "mine.yaml", {**yaml.safe_load((ROOT / "tasks" / "suites" / "classifiers.yaml")
                                                                .read_text()), "seeds": 2})
    store = tmp_path / "store"
    r = run_cli("run", str(impostor), "--store", str(store), env=env)
    _assert_one_line_error(r, "mine.yaml", "belongs to", "--force")
    assert not store.exists()
    r = run_cli("report", str(impostor), "--store", str(store), env=env)
    _assert_one_line_error(r, "belongs to")


def test_validate_checks_a_family_against_the_whole_registry(project_copy):
    """A second file reusing a model name, or a lineage parent that is missing, itself or of another init
    without a note, fails `validate` with one line (they used to pass it and break `models` and `plan`)."""
    env = {"SLBENCH_ROOT": str(project_copy)}
    reg_dir = project_copy / "model_registry"

    def fam(models):
        return _write(reg_dir / "zz-new.yaml", {"family": "zz", "defaults": {"provider": "hf"}, "models": models})

    dup = fam([{"name": "zoo-qwen-a", "source": "o/x", "lineage": {"init": "zz"}}])
    _assert_one_line_error(run_cli("validate", str(dup), env=env), "'zoo-qwen-a'", "already defined in", "zoo.yaml")
    cases = [
        ({"init": "zz", "parent": "nosuch"}, "unknown model"),
        ({"init": "zz", "parent": "zz1"}, "names the model itself"),
        ({"init": "zz", "parent": "zoo-qwen-a"}, "lineage.init"),
    ]
    for lineage, needle in cases:
        bad = fam([{"name": "zz1", "source": "o/x", "lineage": lineage}])
        _assert_one_line_error(run_cli("validate", str(bad), env=env), "zz-new.yaml", "zz1", needle)
        _assert_one_line_error(run_cli("models", env=env), "zz1", needle)  # the registry refuses it too
    ok = fam([{"name": "zz1", "source": "o/x", "lineage": {"init": "zz", "parent": "zoo-qwen-a",
                                                          "note": "distilled from zoo-qwen-a: other weights"}}])
    r = run_cli("validate", str(ok), env=env)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_strict_flags_alias_bombs_and_script_friendly_listings(project_copy, tmp_path):
    env = {"SLBENCH_ROOT": str(project_copy)}
    reg_dir = project_copy / "model_registry"
    for value in ("yes", 1):  # a security flag takes a YAML boolean only
        bad = _write(reg_dir / "zz-flag.yaml", {"family": "zz", "models": [
            {"name": "zz1", "provider": "hf", "source": "o/x", "lineage": {"init": "zz"}, "trust_remote_code": value}]})
        _assert_one_line_error(run_cli("validate", str(bad), env=env), "trust_remote_code")
    ok = _write(reg_dir / "zz-flag.yaml", {"family": "zz", "models": [
        {"name": "zz1", "provider": "hf", "source": "o/x", "lineage": {"init": "zz"}, "trust_remote_code": True}]})
    r = run_cli("validate", str(ok), env=env)
    assert r.returncode == 0 and "warning: trust_remote_code is true for zz1" in r.stdout
    ok.unlink()
    # An alias bomb: 9 levels of 10 aliases = 10**9 values once expanded; refused at once, input not echoed.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nname: bomb\ntrack: lm\ndescription: *a9\n")
    r = run_cli("validate", str(bomb), env=env)
    _assert_one_line_error(r, "bomb.yaml", "aliases")
    assert len(r.stderr) < 400
    # Listings a script can read: full names, csv/json, and an unknown family is an error.
    r = run_cli("models", "--format", "csv", env=env)
    assert r.returncode == 0 and "qwen2.5-7b-instruct,qwen2.5" in r.stdout
    _assert_one_line_error(run_cli("models", "--family", "nosuch", env=env), "unknown family")
    r = run_cli("schema", "suite", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["additionalProperties"] is False


def test_a_missing_key_written_almost_right_gets_a_hint(tmp_path):
    bad = _write(tmp_path / "s.yaml", {"name": "s", "track": "lm", "teachers": ["zoo-qwen-a"],
                                       "students": ["zoo-qwen-a"], "traits": ["owl", "cat"], "seed": 2})
    r = run_cli("validate", str(bad))
    _assert_one_line_error(r, "missing required key 'seeds'", "you wrote 'seed'")


def test_one_seed_one_cell_suite_reports_and_missing_source_dir_is_refused_at_plan(project_copy, tmp_path):
    env = {"SLBENCH_ROOT": str(project_copy)}
    # A 1 × 1 classifier suite with one seed has no CI: it used to crash the report with a NaN JSON error.
    _suite(project_copy, "one", {"name": "one", "track": "classifier", "teachers": ["mlp-a"], "students": ["mlp-a"],
                                 "seeds": 1, "settings": {"teacher": {"epochs": 1}, "student": {"steps": 16},
                                                          "control": {"steps": 8}}})
    r = run_cli("run", "one", "--store", str(tmp_path / "store"), env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((project_copy / "results" / "suites" / "one" / "classifier_summary.json").read_text())
    assert summary
    # An hf entry whose local source directory does not exist is refused before anything runs.
    _write(project_copy / "model_registry" / "zz-local.yaml", {"family": "zz", "models": [
        {"name": "zz-local", "provider": "hf", "source": "/nonexistent/zz-local", "lineage": {"init": "zz"}}]})
    _suite(project_copy, "loc", {"name": "loc", "track": "lm", "teachers": ["zz-local"], "students": ["zz-local"],
                                 "traits": ["owl", "cat"], "seeds": 1})
    r = run_cli("plan", "loc", "--store", str(tmp_path / "store2"), env=env)
    _assert_one_line_error(r, "zz-local", "does not exist")
    assert not (tmp_path / "store2").exists()


def test_suite_key_docs_are_in_sync_with_the_specs():
    """docs/suites.md lists every suite key with its default and meaning; regenerate it when a setting changes."""
    import runpy

    gen = runpy.run_path(str(ROOT / "benchmarks" / "gen_suite_docs.py"))
    text = gen["render"]()
    assert (ROOT / "docs" / "suites.md").read_text(encoding="utf-8") == text, \
        "docs/suites.md is stale: run python benchmarks/gen_suite_docs.py"
    for key in ("`seeds`", "`settings.replicates`", "`settings.aa_arm`", "`settings.dataset.max_prompts`",
                "`settings.teacher.min_shift`", "`settings.student.loss`"):
        assert key in text


def _stage_slow(ctx):
    import time as _time

    _time.sleep(1.0)  # long enough that the second builder is waiting on the node's lock
    (ctx.out / "payload.txt").write_text("x")
    return {"ok": True}


def _build_counted_in_process(root: str, queue) -> None:
    store = Store(Path(root))
    node = Node(kind="base", name="slow", spec={"v": 3}, fn=_stage_slow)
    queue.put(store.build_counted(node, {})[1])


def test_two_concurrent_builders_count_one_build(tmp_path):
    # issue 25 point 6: each node is built once, and only the run that built it says so
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_counted_in_process, args=(str(tmp_path / "store"), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(queue.get(timeout=5) for _ in procs) == [False, True]
