"""Rebuild finished LM nodes of a store with this checkout's code, into another store, and compare their bytes.

The check that a refactoring keeps a stage's output (issue 23: "every published file unchanged")::

    python benchmarks/rebuild_nodes.py --source /work/store --into /tmp/rebuilt dataset/<name>-<id> ...

Each node's upstream nodes are copied from ``--source`` into ``--into`` (the source is only read), the node itself
is made again from its manifest's kind, name, spec and unhashed knobs (its id checked against the key, so the spec
still hashes to it) and built by this checkout's stage (``benchmark.lm.stages.<kind>.run``, one worker, one
thread). Then every payload file's sha256 is compared with the source manifest's, and the manifest ``result``
with the source's (a file the source node does not have, written by a later stage version, is listed, not
compared). Prints one line per node and file; exit status 1 if anything differs. Rebuilding into a store
that already holds the node builds nothing (the node is done): use a fresh ``--into``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _manifest(store: Path, key: str) -> dict[str, Any]:
    return json.loads((store / key / "manifest.json").read_text(encoding="utf-8"))


def _node(m: dict[str, Any], stage: Any) -> Any:
    from benchmark.dag import Node

    return Node(kind=m["kind"], name=m["name"], spec=m["spec"], fn=stage, deps=tuple(m.get("deps", ())),
                unhashed=m.get("unhashed", {}))


def main(argv: list[str] | None = None) -> int:
    from benchmark.executors import executor_for
    from benchmark.store import Store

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("keys", nargs="+", help="node keys <kind>/<name>-<id> finished in --source")
    ap.add_argument("--source", type=Path, required=True, help="store holding the finished nodes (read only)")
    ap.add_argument("--into", type=Path, required=True, help="store to rebuild them in (its upstream nodes copied)")
    args = ap.parse_args(argv)
    nodes: dict[str, Any] = {}
    for key in args.keys:
        m = _manifest(args.source, key)
        stage = importlib.import_module(f"benchmark.lm.stages.{m['kind']}").run
        for dep in m.get("deps", ()):
            if not (args.into / dep / "manifest.json").is_file():
                shutil.copytree(args.source / dep, args.into / dep)
            nodes[dep] = _node(_manifest(args.source, dep), stage)  # done in --into: never run
        nodes[key] = node = _node(m, stage)
        if node.key != key:
            print(f"{key}: its spec hashes to {node.key} with this checkout (the id changed)")
            return 1
    summary = executor_for("local")(list(nodes.values()), Store(args.into), workers=1)
    print(f"built {len(summary.built)}, reused {len(summary.skipped)}", flush=True)
    bad = 0
    for key in args.keys:
        old, new = _manifest(args.source, key), _manifest(args.into, key)
        for name in sorted(set(old["files"]) | set(new["files"])):
            if name not in old["files"]:  # e.g. rejected.jsonl of a node built before the stage wrote it
                print(f"{key} {name}: only in the rebuild ({new['files'][name][:16]})")
                continue
            same = old["files"][name] == new["files"].get(name)
            bad += not same
            print(f"{key} {name}: {'same' if same else 'DIFFERENT'} ({str(new['files'].get(name, '-'))[:16]})")
        same = old.get("result") == new.get("result")
        bad += not same
        print(f"{key} manifest result: {'same' if same else 'DIFFERENT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
