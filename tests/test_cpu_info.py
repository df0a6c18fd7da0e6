"""Manifests record the CPU (model, float-relevant instruction sets, torch's kernel level): byte-identity holds on
one CPU type (docs/install.md, "One CPU type"), so a reader must be able to tell which one built a node. Not hashed
into node ids."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmark.dag import Node, StageContext
from benchmark.manifest import MANIFEST, read_manifest
from benchmark.store import CPU_FLAGS, Store, cpu_info, environment_info

_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse sse2 sse4_2 avx2 fma avx avx512f avx512bw f16c

processor\t: 1
model name\t: another block, never read
flags\t\t: amx_tile
"""


def test_cpu_info_reads_the_model_and_the_float_flags_in_a_fixed_order(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(_CPUINFO, encoding="utf-8")
    info = cpu_info(path)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert info["flags"] == ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw"]  # CPU_FLAGS' order
    assert set(info["flags"]) <= set(CPU_FLAGS)
    path.write_text(_CPUINFO.replace(" avx512f avx512bw", ""), encoding="utf-8")  # an AVX2-only machine
    assert "avx512f" not in cpu_info(path)["flags"]
    missing = cpu_info(tmp_path / "none")  # no /proc (macOS): no flags, the model from platform if it says
    assert missing["flags"] is None and set(missing) == {"model", "flags", "torch_capability"}


def test_torch_capability_is_torchs_own_when_loaded_and_never_imports_it(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    (tmp_path / "cpuinfo").write_text(_CPUINFO, encoding="utf-8")
    assert cpu_info(tmp_path / "cpuinfo")["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    monkeypatch.delitem(sys.modules, "torch")
    assert cpu_info(tmp_path / "cpuinfo")["torch_capability"] is None
    assert "torch" not in sys.modules  # asking did not import it


def _torch_stage(ctx: StageContext) -> dict[str, Any]:
    import torch

    (ctx.out / "x.txt").write_text(str(torch.ones(2).sum().item()), encoding="utf-8")
    return {}


def test_every_manifest_records_the_cpu_outside_the_node_id(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    node = Node(kind="base", name="n", spec={"v": 1}, fn=_torch_stage)
    key = node.key
    manifest = Store(tmp_path / "store").build(node, {})
    assert manifest.cpu is not None and manifest.cpu.torch_capability == torch.backends.cpu.get_cpu_capability()
    assert manifest.cpu.model == environment_info()["cpu"]["model"]
    assert manifest.cpu.flags == cpu_info()["flags"]
    assert node.key == key and "cpu" not in json.dumps(node.hashed())  # recorded, not hashed
    on_disk = json.loads((tmp_path / "store" / node.key / MANIFEST).read_text())
    assert on_disk["cpu"] == manifest.cpu.model_dump()


def test_manifests_without_the_cpu_still_read_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    node = Node(kind="base", name="n", spec={"v": 2}, fn=_torch_stage)
    pytest.importorskip("torch")
    Store(tmp_path / "store").build(node, {})
    folder = tmp_path / "store" / node.key
    doc = json.loads((folder / MANIFEST).read_text())
    del doc["cpu"]  # written before the field existed
    (folder / MANIFEST).write_text(json.dumps(doc))
    assert read_manifest(folder).cpu is None
    doc["cpu"] = {"model": "x", "flags": ["avx2"], "torch_capability": "AVX2", "bogus": 1}
    (folder / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(Exception, match="corrupt manifest, bad key"):
        read_manifest(folder)
