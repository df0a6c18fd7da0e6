"""Reproducible installs (issue 24 point 7) and the CLI's first contact (point 9): the committed lock, `make setup`
installing it by default, manifests recording it, `slbench --version` and a bare `slbench`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from benchmark.errors import UserError
from benchmark.manifest import MANIFEST_SCHEMA, read_manifest
from benchmark.store import LOCK_FILE, environment_info, lock_info
from tests.conftest import ROOT, run_cli

LOCK = ROOT / LOCK_FILE
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _pins() -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for line in LOCK.read_text().splitlines() if (m := PIN.match(line))}


def test_lock_pins_satisfy_pyproject_for_linux_py311() -> None:
    """Every requirement of the project, its `dev` and `gguf` extras is in the lock, at a version it allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"],
            *project["optional-dependencies"]["gguf"]]
    env = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.7",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    pins = _pins()
    for text in reqs:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{text}: not in {LOCK_FILE}; run `make lock`"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), f"{text}: lock has {pins[name]}"


def test_lock_is_hashed_and_torch_is_the_cpu_build() -> None:
    text = LOCK.read_text()
    assert text.startswith("# subliminal-bench") and "make lock" in text
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)  # the header, then one block per pin (its hashes, its "via")
    pins = _pins()
    assert pins["torch"].endswith("+cpu") and "nvidia-cudnn-cu13" not in pins and "triton" not in pins
    # pip --require-hashes refuses a pin without a hash: every pinned block carries at least one sha256.
    for block in blocks:
        if PIN.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    assert len([b for b in blocks if PIN.match(b)]) == len(pins) > 100


def test_lock_info_hash_and_differences(tmp_path: Path) -> None:
    assert lock_info(tmp_path) is None  # a checkout (or an installed package) without a lock
    (tmp_path / "requirements").mkdir()
    lock = tmp_path / LOCK_FILE
    pydantic = metadata.version("pydantic")
    lock.write_text(f"# header\npydantic=={pydantic} \\\n    --hash=sha256:{'0' * 64}\n    # via x\n"
                    "pytest==0.0.1\nno-such-package-xyz==1.0 ; python_version >= '3'\n", encoding="utf-8")
    info = lock_info(tmp_path)
    assert info is not None
    assert info["file"] == LOCK_FILE and info["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert info["differs"] == [f"pytest: lock 0.0.1, installed {metadata.version('pytest')}",
                               "no-such-package-xyz: lock 1.0, installed none"]


def test_environment_info_records_the_checkouts_lock() -> None:
    lock = environment_info()["lock"]
    assert lock["file"] == LOCK_FILE and lock["sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert isinstance(lock["differs"], list)


def _manifest_doc(**extra: object) -> dict[str, object]:
    return {"schema": MANIFEST_SCHEMA, "kind": "report", "name": "s", "id": "0" * 12, "key": "report/s-000000000000",
            "spec_hash": "0" * 64, "spec": {}, "unhashed": {}, "resources": {}, "deps": [], "result": {},
            "files": {}, "sizes": {}, "started": "2026-01-01T00:00:00+00:00", "wall_s": 0.0, "threads": 1,
            "git": {"commit": None, "dirty": None}, "python": "3", "platform": "p", "host": "h", "versions": {},
            **extra}


def test_manifest_lock_field_is_optional_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest_doc()), encoding="utf-8")
    assert read_manifest(tmp_path).lock is None  # manifests written before the field existed still read
    lock = {"file": LOCK_FILE, "sha256": "a" * 64, "differs": ["pytest: lock 1, installed 2"]}
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest_doc(lock=lock)), encoding="utf-8")
    manifest = read_manifest(tmp_path)
    assert manifest.lock is not None and manifest.lock.sha256 == "a" * 64
    assert manifest.to_json()["lock"] == lock
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest_doc(lock={**lock, "bogus": 1})), encoding="utf-8")
    with pytest.raises(UserError, match="lock.bogus"):
        read_manifest(tmp_path)


def test_version_flag() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith(f"slbench (subliminal-bench) {metadata.version('subliminal-bench')}, Python 3.")
    assert LOCK_FILE in line and proc.stderr == ""


def test_bare_slbench_prints_help_and_exits_0() -> None:
    proc = run_cli()
    assert proc.returncode == 0
    assert "Usage: " in proc.stdout and "slbench run" in proc.stdout and "Commands" in proc.stdout
    assert "error" not in proc.stderr
    sub = run_cli("zoo")  # a command group without its subcommand: the same
    assert sub.returncode == 0 and "zoo [OPTIONS] COMMAND" in sub.stdout and "error" not in sub.stderr
    bad = run_cli("nosuch")  # a real usage error is still one line, exit 2
    assert bad.returncode == 2 and bad.stderr.startswith("error: No such command 'nosuch'")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_installs_the_lock_by_default_and_unpinned_on_request(tmp_path: Path) -> None:
    def dry(*args: str) -> str:
        proc = subprocess.run(["make", "-n", *args, f"VENV={tmp_path}/v"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    locked = dry("setup")
    assert f"--require-hashes --no-deps -r {LOCK_FILE}" in locked
    assert "--no-deps --no-build-isolation -e ." in locked and "pip check" in locked and "'.[dev]'" not in locked
    unpinned = dry("setup", "UNPINNED=1")
    assert "-e '.[dev]'" in unpinned and "--require-hashes" not in unpinned and "pip check" in unpinned
    run = dry("run")
    assert f"{tmp_path}/v/bin/slbench run default" in run and f"source {tmp_path}/v/bin/activate" in run
