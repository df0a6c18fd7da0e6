"""Plan suites with the code of this checkout and compare them with saved plans: node ids, cells and teachers.

A refactoring that must keep every node id (issue 23) is checked by planning every suite before and after it::

    slbench plan <suite> --store <empty store> --format json > <baseline dir>/<suite>.json   # at the old commit
    python benchmarks/plan_ids_diff.py <baseline dir> [suite ...] [--store DIR] [--out DIR]

Each suite is planned by ``slbench plan`` in a subprocess (this checkout's ``benchmark`` package first on
``PYTHONPATH``). A suite is ``same`` when the new plan's JSON equals the saved one, ``ids same`` when only fields
other than the node keys differ, ``DIFFERENT`` when a node key appears or disappears (both lists printed), and
``failed`` when planning fails now (its stderr's last line printed). Suites whose baseline is missing or empty
(their plan failed at the old commit; see ``<suite>.err``) are listed and skipped. Exit status 1 if any suite is
DIFFERENT or failed, else 0. Planning only: nothing is built, and the store is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plan_json(suite: str, store: Path) -> tuple[dict | None, str]:
    """``slbench plan <suite> --format json`` with this checkout's code: (the plan, or None; stderr's last line)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    code = "import sys; from benchmark.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "plan", suite, "--store", str(store), "--format", "json"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode != 0:
        return None, last
    return json.loads(proc.stdout), last


def keys(plan: object) -> list[str]:
    """Every node key of a plan, in order: its ``nodes``, or a suite group's (sweep's) ``parts``' nodes."""
    if isinstance(plan, dict):
        own = [n["key"] for n in plan.get("nodes", [])]
        return own + [k for v in plan.values() if isinstance(v, list) for part in v for k in keys(part)]
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("baseline", type=Path, help="folder of <suite>.json plans saved at the old commit")
    ap.add_argument("suites", nargs="*", help="suites to compare (default: every <suite>.json in the baseline)")
    ap.add_argument("--store", type=Path, default=None,
                    help="store the plans read (default: an empty temporary folder, as for the baseline)")
    ap.add_argument("--out", type=Path, default=None, help="also write each new plan here as <suite>.json")
    args = ap.parse_args(argv)
    suites = args.suites or sorted(p.stem for p in args.baseline.glob("*.json"))
    bad = 0
    with tempfile.TemporaryDirectory(prefix="plan-ids-") as tmp:
        store = args.store or Path(tmp) / "store"
        for k, suite in enumerate(suites, 1):
            base_file = args.baseline / f"{suite}.json"
            if not base_file.is_file() or not base_file.read_text().strip():
                print(f"[{k}/{len(suites)}] {suite}: no baseline plan (skipped)", flush=True)
                continue
            old = json.loads(base_file.read_text())
            new, err = plan_json(suite, store)
            if new is None:
                bad += 1
                print(f"[{k}/{len(suites)}] {suite}: failed: {err}", flush=True)
                continue
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{suite}.json").write_text(json.dumps(new, indent=1) + "\n")
            old_keys, new_keys = keys(old), keys(new)
            if new == old:
                status = f"same ({len(new_keys)} nodes)"
            elif old_keys == new_keys:
                fields = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
                status = f"ids same ({len(new_keys)} nodes), other fields differ: {', '.join(fields)}"
            else:
                bad += 1
                gone = sorted(set(old_keys) - set(new_keys))
                added = sorted(set(new_keys) - set(old_keys))
                status = f"DIFFERENT: {len(gone)} nodes gone {gone[:20]}, {len(added)} new {added[:20]}"
            print(f"[{k}/{len(suites)}] {suite}: {status}", flush=True)
    print(f"{len(suites)} suites, {bad} different or failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
