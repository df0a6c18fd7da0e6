"""A fetched model's weight sha256 reaches the report and the results bundle (issue 21.4), and needs_gpu: false keeps
a sub-1B hf model's nodes off GPUs (default tier: no model, no torch).

The report stage reads each evaluation's base nodes (``model_ref.json``, written by the hf provider with the
fetch's provenance) and records ``weights`` in its result only when a base was fetched, so suites of built or hub
models keep byte-identical reports; the bundle names the file in the model cache with that sha256, and validation
checks it where this machine has the file.
"""

from __future__ import annotations

import json

from benchmark.bundle.schema import CACHE_PREFIX
from benchmark.dag import Node
from benchmark.executors.local import run_plan
from benchmark.lm.stages.report import fetched_weights
from benchmark.registry import Registry
from benchmark.store import Store

SHA = "ab" * 32


def _base(ctx):
    prov = {"provenance": {"files": {"model.safetensors": SHA}}} if ctx.node.name.startswith("smollm2") else {}
    (ctx.out / "model_ref.json").write_text(json.dumps({"path": "x", **prov}))
    return {}


def _eval(ctx):
    (ctx.out / "x.json").write_text("{}")
    return {}


def test_report_records_fetched_weights_only(tmp_path):
    reg = Registry()
    smol = Node(kind="base", name="smollm2-135m-instruct", fn=_base,
                spec={"model": reg.model("smollm2-135m-instruct").hashed_dict()})
    zoo = Node(kind="base", name="zoo-qwen-a", fn=_base, spec={"model": reg.model("zoo-qwen-a").hashed_dict()})
    evals = [Node(kind="eval", name=f"e.{b.name}", fn=_eval, spec={"base": b.id}, deps=(b.key,)) for b in (smol, zoo)]
    st = Store(tmp_path / "store")
    summary = run_plan([smol, zoo, *evals], st)
    assert len(summary.built) == 4
    got = fetched_weights([st.path(e) for e in evals])
    assert got == {"smollm2-135m-instruct": {"file": "model.safetensors", "sha256": SHA}}
    assert fetched_weights([st.path(evals[1])]) == {}  # a zoo-only suite records nothing: its report is unchanged


def test_bundle_names_the_cached_weights_and_validation_checks_them(tmp_path, monkeypatch):
    from benchmark.bundle.export import model_infos
    from benchmark.bundle.validate import _weights_problems

    reg = Registry()
    suite = reg.suite("real-smol-distill-mini")[0]
    infos = model_infos(suite, reg, {}, {"smollm2-135m-instruct": {"file": "model.safetensors", "sha256": SHA}})
    w = infos[0].weights
    assert w is not None and w.file == f"{CACHE_PREFIX}models/smollm2-135m-instruct/model.safetensors" and w.sha256 == SHA
    assert model_infos(suite, reg, {})[0].weights is None  # reports written before issue 21 record none
    monkeypatch.setenv("SLBENCH_CACHE", str(tmp_path))
    assert _weights_problems(infos[0], reg.root) == []  # not fetched here: nothing to check
    f = tmp_path / "models" / "smollm2-135m-instruct" / "model.safetensors"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"other weights")
    assert _weights_problems(infos[0], reg.root) == [
        f"model smollm2-135m-instruct: {w.file} has another sha256 than the bundle records"]


def test_needs_gpu_false_gives_hf_nodes_no_gpu(tmp_path):
    from benchmark.lm.plan import _resources
    from benchmark.providers.base import needs_gpu

    reg = Registry()
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        assert reg.model(name).needs_gpu is False and not needs_gpu(reg.model(name))
        assert _resources(reg, name) == {"cpus": 1, "gpus": 0}
    big = reg.model("smollm2-135m-instruct").model_copy(update={"needs_gpu": None})
    assert needs_gpu(big)  # the hf provider's default
    # Not hashed: the entry's identity (and so every node id) is the same with or without it.
    assert big.hashed_dict() == reg.model("smollm2-135m-instruct").hashed_dict()


def test_ray_executor_asks_for_no_gpu_for_cpu_models():
    from benchmark.executors.ray import _resources as ray_resources
    from benchmark.lm.plan import _resources

    reg = Registry()
    node = Node(kind="student", name="s", fn=_eval, spec={}, resources=_resources(reg, "gemma-3-270m"))
    assert ray_resources(node) == (1.0, 0.0)


def test_plan_estimates_cpu_wall_for_cpu_models():
    """`slbench plan real-2fam` (estimate only; planning needs no weights): the GPU line counts every hf node, the
    CPU line gives the needs_gpu: false nodes' core-hours and wall on 2 cores (the report node runs no model)."""
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, _ = reg.suite("real-2fam")
    track = track_for("lm")
    nodes = track.build_plan(spec, settings, reg)
    lines = track.estimate(spec, settings, reg, [n for n in nodes if n.kind != "base"])
    cpu = [ln for ln in lines if "run on CPUs (needs_gpu: false)" in ln]
    assert len(cpu) == 1 and "128 of these node(s)" in cpu[0] and "h wall with --workers 2 on 2 free cores" in cpu[0]
    assert any(ln.startswith("estimate: 128 GPU node(s)") for ln in lines)
