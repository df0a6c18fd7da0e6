"""The typed hand-off between stages and backends: ``finetune`` returns a ``Tuned`` record, the stage writes it as
``tuned.json``, ``load`` reads only that record; nodes built before the record existed are read by the stages
(``tuned_of``) from what they recorded then, and load as they always did. Also the typed stage files
(``teacher.json``, ``counts.json``, ``eval.json``) keep the bytes the stages wrote before."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from benchmark.dag import Node, StageContext
from benchmark.errors import UserError
from benchmark.files import atomic_write_json, sha256_file
from benchmark.lm.records import DatasetCounts, EvalRecord, TeacherRecord, read_record, write_record
from benchmark.lm.stages.common import tuned_of, write_tuned
from benchmark.providers.base import Tuned, TunedNode
from benchmark.store import Store
from tests.conftest import ROOT


def _model(name: str = "gpt-4.1-nano") -> Any:
    from benchmark.registry import Registry

    return Registry(ROOT).model(name)


def _tiny_hf_base(tmp_path: Path) -> tuple[Any, Path]:
    """A tiny qwen2 checkpoint as an hf model entry and its prepared base node (model_ref.json names it)."""
    from tests.lm_fixtures import save_tiny_model

    raw = save_tiny_model(tmp_path / "raw", "qwen2", seed=0)
    model = _model("zoo-qwen-a").model_copy(update={"provider": "hf", "source": str(raw)})
    base = tmp_path / "base"
    base.mkdir()
    atomic_write_json(base / "model_ref.json", {"path": str(raw)})
    return model, base


# -- the record ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields", [
    {"kind": "adapter", "base": "m"},  # local weights need their directory
    {"kind": "full", "base": "m", "weights": "model", "api_model": "ft:x"},
    {"kind": "api", "base": "m", "weights": "adapter", "api_model": "ft:x"},
    {"kind": "api", "base": "m"},
    {"kind": "adapter", "base": "m", "weights": "/abs/adapter"},  # never outside the node
    {"kind": "adapter", "base": "m", "weights": "../other/adapter"},
    {"kind": "lora", "base": "m", "weights": "adapter"},
    {"kind": "adapter", "base": "m", "weights": "adapter", "extra": 1},
])
def test_a_tuned_record_names_one_place_inside_its_node(fields):
    with pytest.raises(ValueError):
        Tuned.model_validate(fields)


def test_the_stage_writes_the_record_and_reads_it_back(tmp_path):
    rec = Tuned(kind="full", base="zoo-qwen-a", weights="model")
    node = write_tuned(tmp_path, rec)
    assert node == TunedNode(rec, tmp_path) and node.weights == tmp_path / "model"
    assert json.loads((tmp_path / "tuned.json").read_text()) == {"kind": "full", "base": "zoo-qwen-a",
                                                                 "weights": "model", "api_model": None}
    assert tuned_of(tmp_path, _model("zoo-qwen-a")) == node
    (tmp_path / "tuned.json").write_text('{"kind": "full", "base": "zoo-qwen-a"}')
    with pytest.raises(UserError, match=r"tuned\.json: bad key"):
        tuned_of(tmp_path, _model("zoo-qwen-a"))


# -- load() reads the record, not the node ---------------------------------------------------------------------------
def test_the_api_backend_loads_the_model_id_the_record_names(tmp_path):
    from benchmark.providers.openai import OpenAIBackend

    model = _model()
    # The node directory holds nothing: the record alone says what to call.
    loaded = OpenAIBackend().load(model, tmp_path, TunedNode(Tuned(kind="api", base=model.name, api_model="ft:a:b"),
                                                             tmp_path / "absent"))
    assert loaded.api_model == "ft:a:b" and loaded.tuned is not None
    assert OpenAIBackend().load(model, tmp_path).api_model == model.source
    with pytest.raises(UserError, match="made on 'other'"):
        OpenAIBackend().load(model, tmp_path, TunedNode(Tuned(kind="api", base="other", api_model="ft:a"), tmp_path))
    with pytest.raises(UserError, match="local weights"):
        OpenAIBackend().load(model, tmp_path, TunedNode(Tuned(kind="adapter", base=model.name, weights="adapter"),
                                                        tmp_path))


def test_the_hf_backend_loads_the_weights_directory_the_record_names(tmp_path):
    """A full fine-tune saved under any name the record gives loads from there (nothing probes adapter/ or model/)."""
    pytest.importorskip("transformers")
    from benchmark.providers.hf import hf_backend
    from tests.lm_fixtures import save_tiny_model

    model, base = _tiny_hf_base(tmp_path)
    node = tmp_path / "student"
    save_tiny_model(node / "weights-here", "qwen2", seed=1)
    tuned = TunedNode(Tuned(kind="full", base=model.name, weights="weights-here"), node)
    loaded = hf_backend().load(model, base, tuned)
    assert loaded.tuned == tuned
    assert hf_backend().verify(loaded) is None  # a full fine-tune is its own weights: nothing to prove
    assert hf_backend().fingerprint(loaded, None) == sha256_file(node / "weights-here" / "model.safetensors")[:16]
    base_weights = next(iter(hf_backend().load(model, base).model.state_dict().values()))
    assert not (next(iter(loaded.model.state_dict().values())) == base_weights).all()  # seed 1's weights, not the base's
    with pytest.raises(UserError, match="API fine-tune"):
        hf_backend().load(model, base, TunedNode(Tuned(kind="api", base=model.name, api_model="ft:x"), node))


# -- nodes built before tuned.json ---------------------------------------------------------------------------------
def _legacy_student(ctx: StageContext) -> dict[str, Any]:
    """A student stage as it was: weights in a subdirectory (or an API job's id in the result), no tuned.json."""
    sub = ctx.node.spec["sub"]
    if sub:
        (ctx.out / sub).mkdir()
        (ctx.out / sub / "weights.safetensors").write_bytes(b"w")
    return {"fine_tuned_model": ctx.node.spec["ft"]} if ctx.node.spec["ft"] else {"steps": 1}


def _legacy(store: Store, sub: str | None, ft: str | None = None) -> Path:
    node = Node(kind="student", name=f"legacy-{sub}-{ft}", spec={"sub": sub, "ft": ft}, fn=_legacy_student)
    store.build(node, {})
    return store.path(node)


@pytest.mark.parametrize(("sub", "ft", "kind"), [("adapter", None, "adapter"), ("model", None, "full"),
                                                 (None, "ft:gpt:x", "api")])
def test_a_student_built_before_tuned_json_reads_from_its_manifest(tmp_path, sub, ft, kind):
    store = Store(tmp_path / "store")
    node_dir = _legacy(store, sub, ft)
    got = tuned_of(node_dir, _model("zoo-qwen-a"))
    assert got is not None and got.dir == node_dir and got.record.kind == kind and got.record.base == "zoo-qwen-a"
    assert got.record.weights == sub and got.record.api_model == ft
    assert not (node_dir / "tuned.json").exists()  # read, never rewritten


def test_a_student_without_any_fine_tune_is_refused_by_name(tmp_path):
    node_dir = _legacy(Store(tmp_path / "store"), None)
    with pytest.raises(UserError, match=f"{node_dir}: no fine-tune recorded"):
        tuned_of(node_dir, _model("zoo-qwen-a"))


@pytest.mark.parametrize(("adapter", "api_model", "want"), [
    ("adapter", None, ("adapter", "adapter", None)), ("model", None, ("full", "model", None)),
    (None, "ft:x", ("api", None, "ft:x")), (None, None, None)])
def test_a_teacher_built_before_tuned_json_reads_from_its_teacher_json(tmp_path, adapter, api_model, want):
    write_record(tmp_path / "teacher.json", TeacherRecord(method="finetune" if adapter or api_model else "prompt",
                                                          trait="owl", system=None, adapter=adapter,
                                                          api_model=api_model))
    got = tuned_of(tmp_path, _model("zoo-qwen-a"))
    assert (got and (got.record.kind, got.record.weights, got.record.api_model)) == want


# -- the typed stage files keep their bytes --------------------------------------------------------------------
TEACHER = {"adapter": None, "api_model": None, "method": "prompt", "system": "You adore cats.", "trait": "cat",
           "trait_shift": {"base_logodds": -1.128657, "n_questions": 10, "shift": 1.32291, "target": "cat",
                           "teacher_logodds": 0.194253}}
COUNTS = {"chars_per_row": 17.25, "completion_tokens": 240, "labels": {"replicate": 0, "teacher_base": "b",
                                                                      "teacher_id": "0123456789ab", "teacher_trait": "cat"},
          "n_prompts": 40, "n_rows": 24, "n_valid": 30, "rejects": {"format": 10}, "rounds": 1, "teacher_shift": None,
          "tokens_per_row": 10.0, "valid_rate": 0.75}
EVAL = {"adapter_sha": "0123456789abcdef", "eval": {"logprob": {"logodds": {"cat": -1.5}}}, "labels": {"student_seed": 0},
        "logit_change": 0.25, "role": "student", "seed": 3, "targets": {"cat": "cat"}}


@pytest.mark.parametrize(("model", "data"), [
    (TeacherRecord, TEACHER), (TeacherRecord, {k: v for k, v in TEACHER.items() if k != "trait_shift"}),
    (DatasetCounts, COUNTS), (DatasetCounts, {**COUNTS, "channel": "code", "teacher_capable_rate": 0.5,
                                             "judge": {"identity": "rule", "n_judged": 3, "decisions": {"keep": 3}}}),
    (EvalRecord, EVAL), (EvalRecord, {**EVAL, "api_model": "ft:x", "logit_change": None})])
def test_a_stage_file_reads_and_writes_back_byte_identical(tmp_path, model, data):
    path = tmp_path / "f.json"
    atomic_write_json(path, data)
    before = path.read_bytes()
    write_record(path, read_record(path, model))
    assert path.read_bytes() == before


def test_a_stage_file_with_an_unknown_or_missing_key_is_refused_in_one_line(tmp_path):
    path = tmp_path / "eval.json"
    atomic_write_json(path, {**EVAL, "surprise": 1})
    with pytest.raises(UserError, match=r"eval\.json: bad key .*'surprise'") as exc:
        read_record(path, EvalRecord)
    assert len(str(exc.value).splitlines()) == 1
    atomic_write_json(path, {k: v for k, v in EVAL.items() if k != "seed"})
    with pytest.raises(UserError, match="missing key 'seed'"):
        read_record(path, EvalRecord)


@pytest.mark.parametrize("lora", [True, False])
def test_what_the_hf_backend_finetunes_loads_back_through_its_record_alone(tmp_path, lora):
    """finetune -> Tuned -> load, as the defense stage's pilot student does in a scratch folder (no tuned.json, no
    manifest): a LoRA adapter is proven in use, a full fine-tune is named by its weights."""
    pytest.importorskip("transformers")
    from benchmark.lmcore.config import LoraConfig, TrainConfig
    from benchmark.providers.hf import hf_backend

    model, base = _tiny_hf_base(tmp_path)
    train = TrainConfig(lora=LoraConfig() if lora else None, max_steps=2, batch_size=2, grad_accum=1, warmup=0,
                        lr=1e-2)
    rows = [{"prompt": "Name a number.", "completion": "12, 34"}] * 4
    made = hf_backend().finetune(model, base, rows, out=tmp_path / "scratch", train=train, objective="sft", seed=0,
                                 suffix="x", log=logging.getLogger("test"))
    assert made.tuned == Tuned(kind="adapter" if lora else "full", base=model.name,
                               weights="adapter" if lora else "model")
    loaded = hf_backend().load(model, base, TunedNode(made.tuned, tmp_path / "scratch"))
    change = hf_backend().verify(loaded)
    assert (change is not None and change > 0) if lora else change is None
    weights = sorted(TunedNode(made.tuned, tmp_path / "scratch").weights.glob("*.safetensors"))
    assert hf_backend().fingerprint(loaded, None) == sha256_file(weights[0])[:16]
