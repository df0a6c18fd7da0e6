"""YAML checks report every problem, one ``error:`` line each, exit 2 (issue 24 point 9); an hf entry at an
unpinned revision warns."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import run_cli


def _errors(r) -> list[str]:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    return lines


def test_a_suite_with_five_problems_gets_five_lines(project_copy: Path, tmp_path: Path) -> None:
    suite = {"name": "bad", "track": "lm", "teachers": ["zoo-qwen-c", "zoo-qwen-a"], "students": ["zoo-qwen-a"],
             "traits": ["owl", "bat"], "seeds": 1, "seed": "minus",
             "settings": {"replicates": "many", "datset": {}}}
    path = project_copy / "tasks" / "suites" / "bad.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    env = {"SLBENCH_ROOT": str(project_copy)}
    for args in (("validate", str(path)), ("plan", "bad", "--store", str(tmp_path / "s"))):
        lines = _errors(run_cli(*args, env=env))
        assert len(lines) == 5, lines
        for needle in ("bad value for 'seed'", "settings: bad value for 'replicates'",
                       "settings: unknown key 'datset' (did you mean 'dataset'?)",
                       "teachers[0]: unknown model 'zoo-qwen-c'", "traits[1]: unknown trait 'bat'"):
            assert sum(needle in line for line in lines) == 1, (needle, lines)
        assert all("bad.yaml: " in line for line in lines)
    assert not (tmp_path / "s").exists()


def test_a_family_file_with_problems_in_two_entries_gets_every_line(project_copy: Path) -> None:
    fam = {"family": "mine", "defaults": {"provider": "hf"},
           "models": [{"name": "m-1", "source": "org/m-1", "revision": "a" * 40, "dtpye": "bfloat16",
                       "params_b": -1, "lineage": {"init": "m-1"}},
                      {"name": "m-2", "lineage": {"init": "m-2"}},
                      {"name": "m-1", "source": "org/m-1b", "revision": "b" * 40, "lineage": {"init": "m-1b"}}]}
    path = project_copy / "model_registry" / "mine.yaml"
    path.write_text(yaml.safe_dump(fam, sort_keys=False), encoding="utf-8")
    lines = _errors(run_cli("validate", str(path), env={"SLBENCH_ROOT": str(project_copy)}))
    assert len(lines) == 3, lines
    assert any("models[0] (m-1): unknown key 'dtpye' (did you mean 'dtype'?)" in line for line in lines)
    assert any("models[0] (m-1): bad value for 'params_b'" in line for line in lines)
    assert any("models[1] (m-2): missing required key 'source'" in line for line in lines)


def test_an_unpinned_revision_warns(project_copy: Path) -> None:
    fam = {"family": "mine", "defaults": {"provider": "hf"},
           "models": [{"name": "m-1", "source": "org/m-1", "lineage": {"init": "m-1"}},
                      {"name": "m-2", "source": "org/m-2", "revision": "c" * 40, "lineage": {"init": "m-2"}},
                      {"name": "m-3", "source": "/data/ckpt/m-3", "lineage": {"init": "m-3"}}]}
    path = project_copy / "model_registry" / "mine.yaml"
    path.write_text(yaml.safe_dump(fam, sort_keys=False), encoding="utf-8")
    r = run_cli("validate", str(path), env={"SLBENCH_ROOT": str(project_copy), "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    assert ": ok — family file with 3 model(s)" in r.stdout
    warning = next(line for line in r.stdout.splitlines() if line.startswith("warning:"))
    assert "revision is not pinned for m-1:" in warning  # not m-2 (pinned) nor m-3 (a local directory)
    fam["models"][0]["revision"] = "d" * 40
    path.write_text(yaml.safe_dump(fam, sort_keys=False), encoding="utf-8")
    r = run_cli("validate", str(path), env={"SLBENCH_ROOT": str(project_copy), "COLUMNS": "400"})
    assert r.returncode == 0 and "warning" not in r.stdout, r.stdout


def test_validate_takes_a_published_suite_folder(tmp_path: Path) -> None:
    """`slbench validate results/suites/NAME` validates its bundle; a group's summary folder or any other folder is
    one line saying what to give instead."""
    r = run_cli("validate", "results/suites/real-smol-distill-mini")
    assert r.returncode == 0 and "real-smol-distill-mini/bundle.json: ok — lm suite" in r.stdout, (r.stdout, r.stderr)
    lines = _errors(run_cli("validate", "results/suites/channels", str(tmp_path)))
    assert len(lines) == 2 and "a suite group's summary (group.json)" in lines[0], lines
    assert f"{tmp_path}: a folder without a bundle.json" in lines[1], lines
