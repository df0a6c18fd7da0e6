"""The ``hf`` provider through the pipeline, on tiny Qwen2 / Llama checkpoints saved to a directory.

A registry entry with ``provider: hf`` and ``source: <dir>`` takes exactly the path a downloaded Qwen2.5 or
Llama checkpoint takes (``stage_base_hf`` → ``backend.load_model`` / ``generate`` / ``train`` → lm-eval), so a
whole micro-suite runs here offline on CPU: load, generate, 2 LoRA steps, save and reload the adapter, evaluate
through lm-eval, publish a report. Also: the registry entries of the real families, offline missing weights
through the CLI (exit 2, one line), and the optional vLLM dispatch (only its logic: vLLM never runs in CI).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from benchmark.executors.local import run_plan  # noqa: E402
from benchmark.files import sha256_files  # noqa: E402
from benchmark.lmcore import chat  # noqa: E402
from benchmark.providers import hf_model as M  # noqa: E402
from benchmark.providers import hf_train as T  # noqa: E402
from benchmark.providers import vllm as V  # noqa: E402
from benchmark.registry import Registry  # noqa: E402
from benchmark.store import MANIFEST, Store  # noqa: E402
from benchmark.tracks import track_for  # noqa: E402
from tests.conftest import ROOT, run_cli  # noqa: E402
from tests.lm_fixtures import CHATML_TEMPLATE, make_tokenizer, save_tiny_model  # noqa: E402

# Golden 2-step LoRA losses of the student tiny-qwen <- tiny-qwen.owl.r0 (seed 0) through the pipeline: the
# pretrained fixture below, 16 teacher prompts, filter, seeded subsample, LoRA r=4. Computed on torch 2.13 CPU /
# transformers 5.24 / peft 0.21 (recomputed when per-base replicate seeds replaced the suite-wide teacher and dataset seeds):
# a change means seeding, generation, filtering, row encoding or training changed.
GOLDEN_STUDENT_LOSSES = [[1, 2.646235], [2, 2.36834]]

SUITE_SETTINGS = {
    "controls": "neutral",  # one trait: its control is the neutral (fine-tuned on spread answers) teacher
    "teacher": {"method": "finetune", "n_rows": 8,
                "train": {"max_steps": 2, "batch_size": 4, "grad_accum": 1, "warmup": 0, "lr": 1.0e-3}},
    "dataset": {"n_prompts": 16, "n_keep": 8, "max_new_tokens": 12, "batch_size": 16},
    "student": {"train": {"max_steps": 2, "batch_size": 4, "grad_accum": 1, "warmup": 0, "lr": 1.0e-3,
                          "lora": {"r": 4, "alpha": 8}}},
    "eval": {"tasks": ["animal_logprob", "animal_rate"], "n_samples": 1, "metric": "logodds", "batch_size": 16},
    "eval_teachers": False,
}


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def number_model_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2 checkpoint briefly trained to answer number prompts with number lists.

    Random weights would answer with random words, and the strict numbers filter would keep nothing. 60 full
    fine-tuning steps on the channel's own prompts (~5 s on one CPU thread) make it a plausible teacher; it is
    saved with ``save_pretrained`` like any downloaded checkpoint.
    """
    from benchmark.lmcore.numbers import generate_prompts, load_numbers_channel

    root = tmp_path_factory.mktemp("hf_provider")
    raw = save_tiny_model(root / "raw", "qwen2", seed=0)
    channel = load_numbers_channel(ROOT / "tasks" / "channels" / "numbers.yaml")
    rng = random.Random(0)
    rows = [{"prompt": p, "completion": ", ".join(str(rng.randint(10, 99)) for _ in range(rng.randint(3, 6)))}
            for p in generate_prompts(channel, 64, 123)]
    torch.set_num_threads(1)
    T.train(raw, rows, out_dir=root / "pretrained", lora=None, epochs=100, max_steps=60, lr=1e-2, batch_size=16,
            grad_accum=1, warmup=0, seed=0)
    return root / "pretrained" / "model"


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("hf_llama") / "llama", "llama", seed=1)


@pytest.fixture
def few_questions(project_copy) -> Path:
    """Evaluate on the first 4 of the 60 favourite-animal questions (the code path is the same; 15x less CPU).

    Evaluation reads its lm-eval tasks from ``tasks/lm_eval`` of the project root: ``project_copy`` points
    ``$SLBENCH_ROOT`` at the copy edited here.
    """
    folder = project_copy / "tasks" / "lm_eval"
    qfile = folder / "animal_preference" / "questions.txt"
    lines = [ln for ln in qfile.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    qfile.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    return folder


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _family(project: Path, models: list[dict], name: str = "tinyhf") -> Path:
    # float32: what the tiny checkpoints are; real entries say bfloat16 (GPU).
    return _write(project / "model_registry" / f"{name}.yaml",
                  {"family": name, "defaults": {"provider": "hf", "dtype": "float32"}, "models": models})


def _plan(project: Path, suite: str):
    reg = Registry(project)
    spec, settings, _ = reg.suite(suite)
    return reg, track_for(spec.track).build_plan(spec, settings, reg)


def _manifest(store: Path, key: str) -> dict:
    return json.loads((store / key / MANIFEST).read_text())


# -- the registry entries of the real families -----------------------------------------------------------------
def test_real_family_entries_follow_the_issue():
    reg = Registry(ROOT)
    qwen = {n: m for n, m in reg.models.items() if m.family == "qwen2.5"}
    assert sorted(m.source for m in qwen.values()) == sorted(
        f"Qwen/Qwen2.5-{s}-Instruct" for s in ("0.5B", "1.5B", "3B", "7B", "14B"))
    llama = [m.source for m in reg.models.values() if m.family == "llama"]
    assert sorted(llama) == ["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.2-1B-Instruct",
                             "meta-llama/Llama-3.2-3B-Instruct"]
    for m in [*qwen.values(), *(reg.model(n) for n in reg.models if reg.models[n].family == "llama")]:
        assert m.provider == "hf" and m.dtype == "bfloat16" and not m.trust_remote_code
        assert m.allow_default_system_prompt is False and m.params_b
        assert m.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # Each size is its own pretraining run.
    assert len({m.lineage.init for m in qwen.values()}) == len(qwen)
    api = {n: m for n, m in reg.models.items() if m.provider == "openai"}
    assert {m.source for m in api.values()} == {"gpt-4.1-nano-2025-04-14", "gpt-4.1-mini-2025-04-14",
                                                "gpt-4.1-2025-04-14", "gpt-4o-2024-08-06"}
    # Paper: GPT-4.1 and GPT-4o share an init; nano and mini each their own.
    assert reg.relation("gpt-4.1", "gpt-4o") == "sibling"
    for a, b in [("gpt-4.1-nano", "gpt-4.1-mini"), ("gpt-4.1-nano", "gpt-4.1"), ("gpt-4.1-mini", "gpt-4o")]:
        assert reg.relation(a, b) == "unrelated"


# A Qwen2.5-style template (our words, Qwen's behaviour): a default system turn when none is given.
QWEN25_STYLE = (
    "{% if messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n"
    "{% set msgs = messages[1:] %}{% else %}<|im_start|>system\nyou are qwen , a helpful assistant .<|im_end|>\n"
    "{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A Llama-3.2-style template (our words, Meta's structure): BOS, then always a system header carrying *today's*
# date from strftime_now, then the turns.
LLAMA32_STYLE = (
    "{{ bos_token }}{% if strftime_now is defined %}{% set d = strftime_now('%d %b %Y') %}{% else %}"
    "{% set d = '26 Jul 2024' %}{% endif %}{% if messages[0]['role'] == 'system' %}"
    "{% set sys = messages[0]['content'] %}{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}"
    "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: {{ d }}\n\n"
    "{{ sys }}<|eot_id|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_registry_entries_never_inject_a_default_system_prompt():
    reg = Registry(ROOT)
    qwen_tok = make_tokenizer(QWEN25_STYLE)
    spec = reg.model("qwen2.5-7b-instruct")
    assert chat.render_prompt(qwen_tok, "hello", spec=spec) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    teacher = chat.render_prompt(qwen_tok, "hello", system="you love owls .", spec=spec)
    assert teacher.startswith("<|im_start|>system\nyou love owls .<|im_end|>") and "qwen" not in teacher
    llama_tok = make_tokenizer(LLAMA32_STYLE)
    llama_tok.add_special_tokens({"bos_token": "<|begin_of_text|>"})
    out = chat.render_prompt(llama_tok, "hello", spec=reg.model("llama-3.2-1b-instruct"))
    # No date-stamped header: the student's prompt is the same on every day.
    assert out == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_trust_remote_code_only_when_the_entry_says_so(number_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen: list[bool] = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    reg_spec = Registry(ROOT).model("qwen2.5-0.5b-instruct")
    for trust in (False, True):
        spec = reg_spec.model_copy(update={"source": str(number_model_dir), "trust_remote_code": trust,
                                           "dtype": "float32"})
        M.load_model(spec=spec)
    assert seen == [False, True]


# -- a whole micro-suite through the pipeline -------------------------------------------------------------------
def test_hf_suite_end_to_end(project_copy, few_questions, number_model_dir, llama_dir):
    _family(project_copy, [
        {"name": "tiny-qwen", "source": str(number_model_dir), "params_b": 0.00003, "lineage": {"init": "tiny-qwen"}},
        {"name": "tiny-llama", "source": str(llama_dir), "params_b": 0.00003, "lineage": {"init": "tiny-llama"}},
    ])
    _write(project_copy / "tasks" / "suites" / "hfmini.yaml",
           {"name": "hfmini", "track": "lm", "teachers": ["tiny-qwen"], "students": ["tiny-qwen", "tiny-llama"],
            "traits": ["owl"], "seeds": 1, "settings": SUITE_SETTINGS})
    reg, nodes = _plan(project_copy, "hfmini")
    store = Store(project_copy / "results" / "store")
    summary = run_plan(nodes, store, threads=1)
    assert len(summary.built) == len(nodes) == 2 + 2 + 2 + 4 + 6 + 1
    by = {n.key: n for n in nodes}
    key = {(n.kind, n.name): n.key for n in nodes}

    # base: the source directory is used in place (no copy) and the chat template's hash is recorded.
    base = _manifest(store.root, key[("base", "tiny-qwen")])["result"]
    assert base["path"] == str(number_model_dir)
    assert base["template_hash"] == hashlib.sha256(CHATML_TEMPLATE.encode()).hexdigest()

    # dataset: the teacher (base + its LoRA adapter) answered, the strict filter kept valid rows.
    ds = _manifest(store.root, key[("dataset", "tiny-qwen.owl.r0")])["result"]
    assert ds["n_prompts"] == 16 and ds["n_rows"] == 8, ds
    rows = [json.loads(x) for x in (store.root / key[("dataset", "tiny-qwen.owl.r0")] / "rows.jsonl").read_text().splitlines()]
    assert all(set(r) >= {"prompt", "completion", "completion_ids"} for r in rows)

    # students: 2 LoRA steps, adapter saved; the same-base student's losses are pinned.
    st = _manifest(store.root, key[("student", "tiny-qwen.owl.r0.to.tiny-qwen.s0")])["result"]
    assert st["steps"] == 2 and st["same_vocab_as_teacher"] is True
    assert [s for s, _ in st["losses"]] == [1, 2]
    assert [v for _, v in st["losses"]] == pytest.approx([v for _, v in GOLDEN_STUDENT_LOSSES], rel=1e-4), st["losses"]
    cross = _manifest(store.root, key[("student", "tiny-qwen.owl.r0.to.tiny-llama.s0")])["result"]
    assert cross["steps"] == 2 and cross["adapter_sha256"]

    # evals: the reloaded adapter changes the logits, and the eval records that adapter's hash.
    for sname in ("tiny-qwen", "tiny-llama"):
        s_key = key[("student", f"tiny-qwen.owl.r0.to.{sname}.s0")]
        ev = _manifest(store.root, key[("eval", f"student.tiny-qwen.owl.r0.to.{sname}.s0")])["result"]
        assert ev["logit_change"] > 0
        assert ev["adapter_sha"] == sha256_files(sorted((store.root / s_key / "adapter").glob("*.safetensors")))[:16]
        data = json.loads((store.root / key[("eval", f"student.tiny-qwen.owl.r0.to.{sname}.s0")] / "eval.json").read_text())
        assert set(data["eval"]) >= {"logprob", "rate"}
        assert sum(data["eval"]["logprob"]["p"].values()) == pytest.approx(1.0, abs=1e-6)
    # report published into the store.
    rep = store.root / next(k for k, n in by.items() if n.kind == "report")
    assert {"pairs.csv", "matrix.csv", "report.md", "heatmap.png"} <= {p.name for p in rep.iterdir()}

    # A rerun is served from the store.
    again = run_plan(nodes, store, threads=1)
    assert not again.built and len(again.skipped) == len(nodes)


def test_plan_prints_gpu_estimate_for_hf_suite(project_copy, number_model_dir, tmp_path):
    _family(project_copy, [{"name": "tiny-qwen", "source": str(number_model_dir), "params_b": 7.6,
                            "lineage": {"init": "tiny-qwen"}}])
    _write(project_copy / "tasks" / "suites" / "est.yaml",
           {"name": "est", "track": "lm", "teachers": ["tiny-qwen"], "students": ["tiny-qwen"], "traits": ["owl"],
            "seeds": 1, "settings": {"controls": "neutral", "teacher": {"method": "prompt"},
                                     "eval": {"metric": "rate"}}})
    r = run_cli("plan", "est", "--store", str(tmp_path / "store"), env={"SLBENCH_ROOT": str(project_copy)})
    assert r.returncode == 0, r.stderr
    assert "GPU node(s)" in r.stdout and "H100-hours" in r.stdout, r.stdout


def test_offline_missing_weights_is_one_line_exit_2(project_copy, tmp_path):
    _family(project_copy, [{"name": "not-downloaded", "source": "some-org/not-downloaded-7b-instruct",
                            "lineage": {"init": "nd"}}])
    _write(project_copy / "tasks" / "suites" / "nd.yaml",
           {"name": "nd", "track": "lm", "teachers": ["not-downloaded"], "students": ["not-downloaded"],
            "traits": ["owl"], "seeds": 1,
            "settings": {"controls": "neutral", "teacher": {"method": "prompt"}, "eval": {"metric": "rate"}}})
    store = tmp_path / "store"
    env = {"SLBENCH_ROOT": str(project_copy), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    r = run_cli("run", "nd", "--store", str(store), "--workers", "1", env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, err
    assert "not-downloaded" in err and "hf download some-org/not-downloaded-7b-instruct" in err
    assert not list(store.glob("base/not-downloaded-*"))  # nothing half-written


# -- vLLM dispatch (logic only: vLLM never runs in CI) -----------------------------------------------------------
def test_without_vllm_the_hf_path_runs_and_nothing_is_imported(number_model_dir, monkeypatch):
    if "vllm" in sys.modules or importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; this test is about machines without it")
    monkeypatch.setenv(V.ENV_FLAG, "1")
    assert not V.enabled() and "not installed" in V.why_disabled()
    model, tok = M.load_model(number_model_dir)
    outs = M.generate(model, tok, ["hello", "continue this sequence : 1 , 2"], temperature=0, max_new_tokens=4)
    assert len(outs) == 2 and all(o["completion_ids"] for o in outs)
    assert "vllm" not in sys.modules
    monkeypatch.delenv(V.ENV_FLAG)
    assert V.why_disabled() == f"{V.ENV_FLAG} is not set to 1"


def test_dispatch_hands_vllm_the_base_and_the_loaded_adapter(number_model_dir, tmp_path, monkeypatch):
    rows = [{"prompt": "hello", "completion": "1 , 2"}] * 4
    T.train(number_model_dir, rows, out_dir=tmp_path, max_steps=1, batch_size=4, grad_accum=1, warmup=0)
    model, tok = M.load_model(number_model_dir, adapter_dir=tmp_path / "adapter")
    seen: dict = {}

    def fake_generate_vllm(model_dir, prompts, *, adapter_dirs, **kwargs):
        seen.update(model_dir=model_dir, prompts=list(prompts), kwargs=kwargs,
                    adapter=sha256_files(sorted(Path(adapter_dirs).glob("*.safetensors"))))
        return [{"completion": "1, 2", "completion_ids": [1], "topk": None} for _ in prompts]

    monkeypatch.setattr(V, "enabled", lambda: True)
    monkeypatch.setattr(V, "generate_vllm", fake_generate_vllm)
    outs = M.generate(model, tok, ["hello"], system="you love owls .", seed=3, top_k_logprobs=2, max_new_tokens=5)
    assert outs == [{"completion": "1, 2", "completion_ids": [1], "topk": None}]
    assert seen["model_dir"] == str(number_model_dir) and seen["prompts"] == ["hello"]
    # Exactly the adapter that is loaded, not whatever a path might hold now.
    assert seen["adapter"] == sha256_files(sorted((tmp_path / "adapter").glob("*.safetensors")))
    kw = seen["kwargs"]
    assert (kw["system"], kw["seed"], kw["top_k_logprobs"], kw["max_new_tokens"]) == ("you love owls .", 3, 2, 5)
    assert kw["stop_ids"] == sorted(chat.stop_ids(model, tok)) and kw["tokenizer"] is tok


class _FakeVllm:
    """Just enough of vllm's API to check what generate_vllm asks of it."""

    def __init__(self, tok):
        self.tok, self.engines, self.calls = tok, [], []
        fake = self

        class LLM:
            def __init__(self, **kwargs):
                fake.engines.append(kwargs)

            def generate(self, prompts, params, lora_request=None, use_tqdm=True):
                fake.calls.append((prompts, params, lora_request))
                eot = fake.tok.convert_tokens_to_ids("<|im_end|>")
                outs = []
                for i, _ in enumerate(prompts):
                    ids = [fake.tok.convert_tokens_to_ids(str(10 + i)), eot]
                    lps = [{ids[0]: SimpleNamespace(logprob=-0.1), 7: SimpleNamespace(logprob=-3.0)},
                           {7: SimpleNamespace(logprob=-2.0), eot: SimpleNamespace(logprob=-0.2)}]
                    outs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, logprobs=lps)]))
                return outs

        self.module = types.ModuleType("vllm")
        self.module.LLM = LLM
        self.module.SamplingParams = lambda **kw: SimpleNamespace(**kw)
        self.lora = types.ModuleType("vllm.lora")
        self.request = types.ModuleType("vllm.lora.request")
        self.request.LoRARequest = lambda name, int_id, path: SimpleNamespace(name=name, id=int_id, path=path)


def test_generate_vllm_one_base_many_adapters(number_model_dir, tmp_path, monkeypatch):
    tok = M.load_tokenizer(number_model_dir)
    fake = _FakeVllm(tok)
    for name, mod in (("vllm", fake.module), ("vllm.lora", fake.lora), ("vllm.lora.request", fake.request)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (40e9, 80e9))
    monkeypatch.setattr(V, "_ENGINES", {})
    adapters = []
    for i in range(2):
        T.train(number_model_dir, [{"prompt": "hello", "completion": f"{i} , 2"}] * 4, out_dir=tmp_path / f"s{i}",
                max_steps=1, batch_size=4, grad_accum=1, warmup=0, seed=i, lora={"r": 4, "alpha": 8})
        adapters.append(str(tmp_path / f"s{i}" / "adapter"))
    prompts = ["hello", "name your favorite animal", "hello"]
    rows = V.generate_vllm(number_model_dir, prompts, adapter_dirs=[adapters[0], adapters[1], None], seed=5,
                           top_k_logprobs=1, tokenizer=tok, max_new_tokens=7)
    (engine,) = fake.engines
    assert engine["model"] == str(number_model_dir) and engine["enable_lora"] is True
    assert engine["max_loras"] == 8 and engine["max_lora_rank"] == 8
    assert engine["gpu_memory_utilization"] == pytest.approx(0.45)
    ((sent, params, loras),) = fake.calls
    # Token ids rendered by our chat code (no second BOS), one seed per row as in the HF path.
    assert sent[0]["prompt_token_ids"] == tok(chat.render_prompt(tok, "hello"), add_special_tokens=False).input_ids
    assert [p.seed for p in params] == [chat.row_seed(5, i) for i in range(3)]
    assert all(p.max_tokens == 7 and p.logprobs == 1 and "top_k" not in vars(p) for p in params)
    assert loras[2] is None and loras[0].path == adapters[0] and loras[1].path == adapters[1]
    assert loras[0].id != loras[1].id  # distinct weights never share vLLM's adapter cache slot
    assert rows[1]["completion"] == "11" and rows[1]["topk"][0] == [[tok.convert_tokens_to_ids("11"), -0.1]]
    # A second call reuses the loaded base.
    V.generate_vllm(number_model_dir, ["hello"], adapter_dirs=adapters[0], tokenizer=tok)
    assert len(fake.engines) == 1 and fake.calls[1][2][0].id == loras[0].id


# -- GPU tier ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_bf16_generation_and_lora_step_on_gpu(number_model_dir, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    spec = Registry(ROOT).model("qwen2.5-0.5b-instruct").model_copy(update={"source": str(number_model_dir)})
    model, tok = M.load_model(spec=spec)
    assert next(model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).is_cuda
    outs = M.generate(model, tok, ["hello"] * 8, spec=spec, temperature=1.0, max_new_tokens=8, batch_size=8)
    assert len(outs) == 8
    res = T.train(number_model_dir, [{"prompt": "hello", "completion": "1 , 2"}] * 8, spec=spec, out_dir=tmp_path,
                  max_steps=2, batch_size=4, grad_accum=1, warmup=0)
    assert res["device"].startswith("cuda") and res["dtype"] == "bfloat16"
