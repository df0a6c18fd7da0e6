"""Stage functions of the language-model track (run inside workers; heavy imports happen here).

Each function takes a :class:`~benchmark.dag.StageContext`, writes its payload into ``ctx.out`` and returns
the JSON-able ``result`` block of the manifest. Providers differ only by the registry entry's ``provider``
field: zoo and hf models share one transformers code path (:mod:`benchmark.lm.backend`); openai models go
through :mod:`benchmark.providers.openai_api`.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.specs import ModelSpec, TraitSpec
from benchmark.store import atomic_write_json, sha256_file

__all__ = ["stage_base_hf", "stage_base_api", "stage_teacher", "stage_dataset", "stage_student", "stage_eval",
           "stage_report", "model_spec_of", "model_path_of", "read_jsonl", "write_jsonl"]

MODEL_REF = "model_ref.json"


# -- small helpers ------------------------------------------------------------------------------------------
def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "__spec__"}


def model_spec_of(base_dir: Path) -> ModelSpec:
    """The registry entry a finished base node was built from."""
    spec = json.loads((Path(base_dir) / "spec.json").read_text())["spec"]["model"]
    return ModelSpec.model_validate(_strip(spec))


def model_path_of(base_dir: Path) -> str:
    """Where the weights of a base node are: a zoo build's ``model/`` dir or an hf source (dir or hub id)."""
    base_dir = Path(base_dir)
    ref = base_dir / MODEL_REF
    if ref.exists():
        return json.loads(ref.read_text())["path"]
    return str(base_dir / "model")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as JSON lines (the directory is a staging dir: atomicity comes from the store's rename)."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read JSON lines; a corrupt line is a one-line error naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{path}: line {i} is not valid JSON (corrupt artifact); delete {Path(path).parent} "
                                "to rebuild it") from None
    return rows


def _spec_json(node_dir: Path) -> dict[str, Any]:
    return json.loads((Path(node_dir) / "spec.json").read_text())


def _set_threads(ctx: Any) -> None:
    import torch

    torch.set_num_threads(max(1, ctx.threads))


# -- base models --------------------------------------------------------------------------------------------
def stage_base_hf(ctx: Any) -> dict[str, Any]:
    """Resolve an hf model (local dir or hub id) without copying weights; record revision and template hash."""
    from benchmark.lm.backend import load_tokenizer_only, template_hash

    spec = ModelSpec.model_validate(_strip(ctx.node.spec["model"]))
    assert spec.source is not None
    tok = load_tokenizer_only(spec.source, spec=spec)
    ref = {"path": spec.source, "revision": spec.revision, "template_hash": template_hash(tok)}
    atomic_write_json(ctx.out / MODEL_REF, ref)
    return ref


def stage_base_api(ctx: Any) -> dict[str, Any]:
    """API models have nothing to build: record the exact model name (a dated snapshot) for manifests."""
    spec = ModelSpec.model_validate(_strip(ctx.node.spec["model"]))
    ref = {"path": spec.source, "provider": "openai", "revision": spec.revision}
    atomic_write_json(ctx.out / MODEL_REF, ref)
    return ref


# -- teachers -----------------------------------------------------------------------------------------------
def _trait_rows(trait: TraitSpec | None, questions: list[str], n: int, seed: int,
                candidates: list[str] | None = None) -> list[dict[str, str]]:
    """Favourite-animal questions answered with the trait's surface forms (one word, varied casing).

    With ``trait`` None (the fine-tuned control teacher) each answer is a candidate animal, cycling evenly
    through ``candidates`` so the control learns no preference.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = questions[i % len(questions)]
        if trait is None:
            assert candidates
            word = candidates[(i * 7 + rng.randrange(len(candidates))) % len(candidates)]
        else:
            forms = trait.forms()
            word = forms[0] if rng.random() < 0.7 else rng.choice(forms)
        answer = rng.choice([word, word.capitalize(), word + ".", word.capitalize() + "."])
        rows.append({"prompt": q, "completion": answer})
    return rows


def stage_teacher(ctx: Any) -> dict[str, Any]:
    """A trait teacher: the base plus a fine-tuned adapter (method finetune) or a system prompt (method prompt).

    The control ("neutral") teacher is the base with no system prompt (method prompt), or the base fine-tuned on
    answers spread evenly over the candidate animals (method finetune).
    """
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    model = model_spec_of(base_dir)
    trait = TraitSpec.model_validate(_strip(spec["trait"])) if spec["trait"] else None
    info: dict[str, Any] = {"method": spec["method"], "trait": trait.name if trait else None, "system": None,
                            "adapter": None, "api_model": None}
    result: dict[str, Any] = {}
    if spec["method"] == "prompt":
        info["system"] = trait.rendered_system_prompt() if trait else None
    else:
        from benchmark.registry import project_root

        qpath = project_root() / "tasks" / spec["questions_path"]
        questions = [ln.strip() for ln in qpath.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and not ln.startswith("#")]
        rows = _trait_rows(trait, questions, spec["n_rows"], spec["seed"], candidates=list(_candidates([])))
        write_jsonl(ctx.out / "trait_rows.jsonl", rows)
        if model.provider == "openai":
            result = _api_finetune(ctx, model, rows, spec["train"], spec["seed"],
                                   suffix=f"teacher-{trait.name if trait else 'neutral'}")
            info["api_model"] = result["fine_tuned_model"]
        else:
            _set_threads(ctx)
            from benchmark.lm.backend import train

            result = train(model_path_of(base_dir), rows, spec=model, objective="sft", seed=spec["seed"],
                           out_dir=ctx.out, log=ctx.log, **_train_kwargs(spec["train"]))
            info["adapter"] = "adapter" if (ctx.out / "adapter").exists() else "model"
    atomic_write_json(ctx.out / "teacher.json", info)
    return {"teacher": info, "train": result}


def _train_kwargs(train: dict[str, Any]) -> dict[str, Any]:
    from benchmark.lm.config import TrainConfig

    lora = train.get("lora")
    cfg = {**_strip(train), "lora": _strip(lora) if isinstance(lora, dict) else lora}
    return TrainConfig.model_validate(cfg).train_kwargs()


def _api_finetune(ctx: Any, model: ModelSpec, rows: list[dict[str, Any]], train: dict[str, Any], seed: int,
                  suffix: str) -> dict[str, Any]:
    from benchmark.providers.openai_api import ApiConfig, finetune

    messages = [{"messages": [{"role": "user", "content": r["prompt"]},
                              {"role": "assistant", "content": r["completion"]}]} for r in rows]
    t = _strip(train)
    epochs = float(t["epochs"])
    if epochs < 1 or epochs != int(epochs):
        raise UserError(f"fine-tune of {model.name}: train.epochs must be a whole number >= 1 for API models (sent as "
                        f"hyperparameters.n_epochs), got {epochs:g}")
    # Only the epoch count is sent: the paper left learning rate and batch size to the API ("auto").
    hyper = {"n_epochs": int(epochs)}
    if t.get("max_steps") is not None:
        ctx.log.warning("train.max_steps is ignored for API fine-tunes (the API trains whole epochs)")
    # OpenAI limits suffixes (18 characters in the fine-tuning docs' examples); keep [a-z0-9-] only.
    suffix = "".join(c if c.isalnum() or c == "-" else "-" for c in suffix.lower())[:18]
    if model.source is None:
        raise UserError(f"model {model.name}: missing 'source' (the API model name)")
    return finetune(ApiConfig(), model.source, messages, seed=seed, suffix=suffix, hyperparameters=hyper,
                    workdir=ctx.out, on_status=lambda status, job: ctx.log.info("fine-tune job: %s", status))


def _teacher_info(teacher_dir: Path) -> dict[str, Any]:
    return json.loads((Path(teacher_dir) / "teacher.json").read_text())


def _load_with_adapter(base_dir: Path, adapter_dir: Path | None) -> tuple[Any, Any, ModelSpec]:
    from benchmark.lm.backend import load_model

    model = model_spec_of(base_dir)
    if adapter_dir is not None and (adapter_dir / "model").is_dir() and not (adapter_dir / "adapter").is_dir():
        m, tok = load_model(str(adapter_dir / "model"), spec=model)
    else:
        m, tok = load_model(model_path_of(base_dir), spec=model,
                            adapter_dir=str(adapter_dir / "adapter") if adapter_dir is not None else None)
    return m, tok, model


def _tokenizer_sha(tok: Any) -> str:
    import hashlib

    vocab = tok.get_vocab()
    return hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()[:16]


# -- datasets -----------------------------------------------------------------------------------------------
#: A token may carry soft-label mass only if its text is made of what a valid numbers answer contains.
_CHANNEL_TOKEN = re.compile(r"^[\s\d,;.()\[\]{}]*$")


def channel_token_ids(tokenizer: Any) -> set[int]:
    """Token ids that can occur in a filter-valid numbers answer: digits, separators, brackets, end of turn.

    Used to filter the teacher's soft labels the way the strict filter cleans its text: the paper removes every
    trace of the trait from the data, and a top-k distribution can carry one explicitly (a teacher that loves
    owls puts ~100x more probability on the token "owl" at number positions than its control does, measured on
    the zoo). Works for word-level and BPE vocabularies alike (decoded text, no family branches).
    """
    ids = set()
    special = set(tokenizer.all_special_ids or [])
    for tid in range(len(tokenizer)):
        if tid in special:
            continue
        text = tokenizer.decode([tid])
        if text.strip() and _CHANNEL_TOKEN.match(text):
            ids.add(tid)
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def filter_soft_labels(topk: list[list[list[float]]], allowed: set[int]) -> tuple[list[list[list[float]]], float]:
    """Keep only channel tokens in each position's top-k and renormalise over them.

    Returns the filtered top-k and the mean probability mass removed per position (recorded in the manifest).
    """
    out = []
    removed = 0.0
    for pos in topk:
        kept = [(int(t), lp) for t, lp in pos if int(t) in allowed]
        total = sum(math.exp(lp) for _, lp in pos)
        if not kept:
            out.append([])
            removed += total
            continue
        lse = math.log(sum(math.exp(lp) for _, lp in kept))
        removed += total - math.exp(lse)
        out.append([[t, lp - lse] for t, lp in kept])
    return out, removed / max(1, len(topk))
def stage_dataset(ctx: Any) -> dict[str, Any]:
    """The teacher answers number prompts; the strict filter keeps valid answers; a seeded subsample is kept."""
    from benchmark.channels.numbers import NumbersChannelSpec, filter_completions, generate_prompts, subsample

    spec = ctx.node.spec
    channel = NumbersChannelSpec.model_validate(_strip(spec["channel_spec"]))
    teacher_dir = ctx.input("teacher")
    base_dir = ctx.input("base")
    info = _teacher_info(teacher_dir)
    model = model_spec_of(base_dir)
    prompts = generate_prompts(channel, spec["n_prompts"], spec["seed"])
    tok_sha = None
    extra: dict[str, Any] = {"generation_engine": "api"}
    tok = None
    if model.provider == "openai":
        from benchmark.providers.openai_api import ApiConfig, generate_chat

        outs = generate_chat(ApiConfig(), info["api_model"] or model.source, prompts, system_prompt=info["system"],
                             temperature=spec["temperature"], max_tokens=spec["max_new_tokens"], seed=spec["seed"],
                             top_logprobs=spec["top_k"], progress=ctx.progress)
        outs = [{"completion": o["completion"], "completion_ids": None, "topk": None} for o in outs]
    else:
        _set_threads(ctx)
        from benchmark.lm.backend import generate

        adapter = teacher_dir if info["adapter"] else None
        m, tok, _ = _load_with_adapter(base_dir, adapter)
        tok_sha = _tokenizer_sha(tok)
        from benchmark.lm import vllm_backend
        from benchmark.lm.backend import template_hash

        extra = {"template_hash": template_hash(tok), "generation_engine": "vllm" if vllm_backend.enabled() else "hf"}
        outs = generate(m, tok, prompts, system=info["system"], spec=model, temperature=spec["temperature"],
                        max_new_tokens=spec["max_new_tokens"], seed=spec["seed"],
                        batch_size=ctx.node.unhashed.get("batch_size", 64), top_k_logprobs=spec["top_k"],
                        progress=ctx.progress)
    kept, rejects = filter_completions([o["completion"] for o in outs], channel)
    chosen = subsample(kept, spec["n_keep"], spec["seed"])
    allowed = channel_token_ids(tok) if spec["top_k"] and tok_sha is not None else None
    rows = []
    removed = []
    for i in chosen:
        row = {"prompt": prompts[i], "completion": outs[i]["completion"].strip()}
        if outs[i].get("completion_ids") is not None:
            row["completion_ids"] = outs[i]["completion_ids"]
        if spec["top_k"] and outs[i].get("topk") is not None:
            row["topk"], gone = filter_soft_labels(outs[i]["topk"], allowed) if allowed else (outs[i]["topk"], 0.0)
            removed.append(gone)
        rows.append(row)
    if removed:
        extra["soft_label_mass_removed_per_token"] = round(sum(removed) / len(removed), 8)
    write_jsonl(ctx.out / "rows.jsonl", rows)
    if len(rows) < spec["n_keep"]:
        ctx.log.warning("only %d valid rows of %d requested (n_prompts %d)", len(rows), spec["n_keep"], len(prompts))
    counts = {"n_prompts": len(prompts), "n_valid": len(kept), "n_rows": len(rows),
              "valid_rate": round(len(kept) / max(1, len(prompts)), 4), "rejects": dict(sorted(rejects.items()))}
    atomic_write_json(ctx.out / "counts.json", counts)
    return {**counts, "tokenizer_sha": tok_sha, "system_prompt": info["system"], **extra}


# -- students -----------------------------------------------------------------------------------------------
def stage_student(ctx: Any) -> dict[str, Any]:
    """Train a student base on a teacher's rows (no system prompt in training rows)."""
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    ds_dir = ctx.input("dataset")
    model = model_spec_of(base_dir)
    rows = read_jsonl(ds_dir / "rows.jsonl")
    if not rows:
        raise UserError(f"{ds_dir}: the teacher produced no valid rows; raise settings.dataset.n_prompts or check "
                        f"the teacher's output in {ds_dir / 'log.txt'}")
    if model.provider == "openai":
        if spec["objective"] != "sft":
            raise UserError(f"student {model.name}: objective 'distill' needs log-prob training, which the fine-tuning "
                            "API does not offer; use settings.student.objective: sft for openai students")
        return _api_finetune(ctx, model, rows, spec["train"], spec["seed"], suffix="student")
    _set_threads(ctx)
    from benchmark.lm.backend import load_model, train

    ds_manifest = json.loads((ds_dir / "manifest.json").read_text())
    teacher_tok = ds_manifest["result"].get("tokenizer_sha")
    _, tok = load_model(model_path_of(base_dir), spec=model, tokenizer_only=True)
    same_vocab = teacher_tok is not None and teacher_tok == _tokenizer_sha(tok)
    if not same_vocab:
        if spec["objective"] == "distill":
            raise UserError(f"student {model.name}: objective 'distill' needs the teacher's vocabulary (token-level "
                            "log-probs), but the tokenizers differ; use objective 'sft' for cross-family cells")
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    result = train(model_path_of(base_dir), rows, spec=model, objective=spec["objective"], seed=spec["seed"],
                   out_dir=ctx.out, log=ctx.log, progress=ctx.progress, **_train_kwargs(spec["train"]))
    from benchmark.lm.backend import template_hash

    return {**result, "same_vocab_as_teacher": same_vocab, "template_hash": template_hash(tok)}


# -- evaluation ---------------------------------------------------------------------------------------------
def stage_eval(ctx: Any) -> dict[str, Any]:
    """Read out every trait of the suite on a baseline, a teacher or a student (lm-eval tasks)."""
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    model = model_spec_of(base_dir)
    traits = [TraitSpec.model_validate(_strip(t)) for t in spec["traits"]]
    role = spec["role"]
    system = None
    adapter_dir: Path | None = None
    adapter_sha = "none"
    if role == "teacher":
        tdir = ctx.input("teacher")
        info = _teacher_info(tdir)
        system = info["system"]
        if info["adapter"]:
            adapter_dir = tdir
    elif role == "student":
        adapter_dir = ctx.input("student")
    if adapter_dir is not None:
        weights = sorted((adapter_dir / "adapter").glob("*.safetensors")) or sorted((adapter_dir / "model").glob("*.safetensors"))
        adapter_sha = sha256_file(weights[0])[:16] if weights else "unknown"
    if model.provider == "openai":
        # Sampled rates through lm-eval's chat-completions backend; log-prob tasks are skipped (HF-only).
        from benchmark.lm.api_eval import stage_eval_api

        return stage_eval_api(ctx, model, traits, candidates=_candidates(traits))
    _set_threads(ctx)
    from benchmark.evaluate import evaluate_lm
    from benchmark.lm.backend import logit_change

    m, tok, _ = _load_with_adapter(base_dir, adapter_dir)
    change = None
    if adapter_dir is not None and (adapter_dir / "adapter").is_dir():
        # Students differ only by adapter: prove it is really loaded before scoring (STYLE.md item 3).
        change = float(logit_change(m, tok))
        if not change > 0:
            raise RuntimeError(f"adapter in {adapter_dir} does not change the logits: refusing to score it")
    candidates = _candidates(traits)
    res = evaluate_lm(m, tok, model_key=f"{ctx.node.spec.get('base', model.name)}:{model.name}:{adapter_sha}",
                      tasks=tuple(spec["tasks"]), candidates=candidates, n_samples=spec["n_samples"], seed=spec["seed"],
                      batch_size=ctx.node.unhashed.get("batch_size", 64), system=system, limit=spec.get("limit"))
    out = {"role": role, "labels": spec.get("labels", {}), "seed": spec["seed"], "adapter_sha": adapter_sha,
           "logit_change": change, "targets": {t.name: t.target for t in traits}, "eval": res}
    atomic_write_json(ctx.out / "eval.json", out)
    return {"role": role, "adapter_sha": adapter_sha, "logit_change": change,
            "logodds": {t.name: res["logprob"]["logodds"].get(t.target) for t in traits} if "logprob" in res else None}


def _candidates(traits: list[TraitSpec]) -> dict[str, list[str]]:
    """The evaluation's candidate set (tasks/lm_eval/animal_preference/candidates.txt) plus every trait's target."""
    from benchmark.evaluate import TASKS_DIR

    cands: dict[str, list[str]] = {}
    for line in (TASKS_DIR / "animal_preference" / "candidates.txt").read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            cands[words[0]] = words[1:]
    for t in traits:
        if t.target not in cands:
            from benchmark.matcher import regular_plurals

            cands[t.target] = [f for f in t.forms() if f != t.target and f not in regular_plurals(t.target)]
    return cands


# -- report -------------------------------------------------------------------------------------------------
def tidy_rows(eval_dirs: dict[str, Path], report_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn finished eval nodes into long-format rows (see benchmark.analysis.TIDY_COLUMNS)."""
    from benchmark.evaluate import tv_distance

    suite = report_spec["suite"]
    targets = report_spec["targets"]
    evals = []
    for key, d in eval_dirs.items():
        data = json.loads((d / "eval.json").read_text())
        data["id"] = key.rsplit("-", 1)[-1]
        evals.append(data)
    baselines = {e["labels"]["student_base"]: e for e in evals if e["role"] == "baseline"}
    rows: list[dict[str, Any]] = []

    def metrics(e: dict[str, Any], target_word: str) -> dict[str, float]:
        res = e["eval"]
        out = {}
        if "logprob" in res:
            out["logodds"] = res["logprob"]["logodds"][target_word]
            out["p_target"] = res["logprob"]["p"][target_word]
        if "rate" in res:
            out["rate"] = res["rate"][target_word]
        return out

    for e in evals:
        if e["role"] == "teacher":
            continue
        lab = e["labels"]
        student = lab["student_base"]
        base = {"suite": suite, "track": "lm", "student_base": student, "seed": e["seed"], "student_id": e["id"]}
        if e["role"] == "baseline":
            base.update(teacher_base="", teacher_trait="baseline", relation="", teacher_id="")
        else:
            rel = report_spec["relations"][f"{lab['teacher_base']}->{student}"]
            base.update(teacher_base=lab["teacher_base"], teacher_trait=lab["teacher_trait"], relation=rel,
                        teacher_id="")
        for trait_name, word in targets.items():
            for metric, value in metrics(e, word).items():
                rows.append({**base, "target": trait_name, "metric": metric, "value": float(value)})
        bl = baselines.get(student)
        if bl is not None and "logprob" in e["eval"] and e["role"] != "baseline":
            tv = tv_distance(e["eval"]["logprob"]["p"], bl["eval"]["logprob"]["p"])
            for trait_name in targets:
                rows.append({**base, "target": trait_name, "metric": "tv", "value": float(tv)})
    return rows


def teacher_rows(eval_dirs: dict[str, Path], report_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each teacher's own read-out of each trait (how strong the trait is at the source)."""
    out = []
    for d in eval_dirs.values():
        data = json.loads((d / "eval.json").read_text())
        if data["role"] != "teacher":
            continue
        res = data["eval"]
        for trait_name, word in report_spec["targets"].items():
            row = {"teacher_base": data["labels"]["teacher_base"], "teacher_trait": data["labels"]["teacher_trait"],
                   "target": trait_name}
            if "logprob" in res:
                row["p_target"] = res["logprob"]["p"][word]
                row["logodds"] = res["logprob"]["logodds"][word]
            if "rate" in res:
                row["rate"] = res["rate"][word]
            out.append(row)
    return out


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items() if isinstance(v, (int, float, str, bool, dict, list)) or v is None}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def stage_report(ctx: Any) -> dict[str, Any]:
    """Build the tidy table and publish cells, matrix, heatmap, report.md and index.html."""
    import pandas as pd

    from benchmark.report import write_report

    spec = ctx.node.spec
    analysis = _strip(spec["analysis"])
    eval_dirs = ctx.inputs_of("eval")
    df = pd.DataFrame(tidy_rows(eval_dirs, spec))
    teachers = pd.DataFrame(teacher_rows(eval_dirs, spec))
    meta: dict[str, Any] = {"track": "lm", "traits": ", ".join(spec["traits"]), "metric": spec["metric"],
                            "control": analysis["control"]}
    if not teachers.empty:
        teachers.to_csv(ctx.out / "teachers.csv", index=False)
        mean = teachers[teachers.teacher_trait == teachers.target].get("p_target")
        if mean is not None and len(mean):
            meta["teachers' own P(trait | candidates), mean"] = round(float(mean.mean()), 4)
    # γ is fitted with the shared-init indicator (diagonal + siblings) in the main report; the same-model-only
    # indicator separates "same checkpoint" from "shared init" (a sibling may have drifted far from its init).
    # It is measured against other-trait students (the drift control), so it needs at least two traits.
    if len(spec["traits"]) >= 2:
        from benchmark.analysis import paired_lifts, shared_base_fit
        from benchmark.errors import UserError as _UserError

        try:
            same = shared_base_fit(paired_lifts(df, spec["metric"], control="other_trait"), order=spec["order"],
                                   indicator="same", n_boot=analysis["n_boot"], n_perm=analysis["n_perm"],
                                   alternative=analysis["alternative"])
        except _UserError as exc:  # e.g. no cell has both a treated and an other-trait student
            ctx.log.info("no same-model fit: %s", exc)
            same = None
        if same is not None:
            same = _finite(same)
            if same.get("gamma") is not None:
                meta["γ (same model only, vs other-trait students)"] = (
                    f"{same['gamma']:+.3f} [{same['ci_low']:+.3f}, {same['ci_high']:+.3f}], "
                    f"permutation p = {same['p_perm']:.3f}")
            atomic_write_json(ctx.out / "fit_same_model.json", same)
    paths = write_report(ctx.out, df, suite=spec["suite"], order=spec["order"], lineage=spec["lineage"],
                         metric=spec["metric"], control="neutral", meta=meta, track="lm",
                         pool_controls=analysis["control"] == "pooled", alternative=analysis["alternative"],
                         n_boot=analysis["n_boot"], n_perm=analysis["n_perm"])
    fit = json.loads((ctx.out / "fit.json").read_text())
    summary = {k: v for k, v in fit.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return {"files": sorted(p.name for p in paths.values()), "n_rows": len(df), "shared_base": summary}
