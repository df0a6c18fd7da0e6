"""Defense stage of the LM track: one dataset's rows transformed by a defense plug-in (:mod:`benchmark.lm.defenses`).

Planned only when ``settings.dataset.defense`` names a defense other than ``none``; the students of that dataset
then train on this node's ``rows.jsonl`` instead of the dataset's. Writes ``rows.jsonl`` (every row, transformed or
not, in the dataset's order), ``changes.jsonl`` (one record per changed row: what it was, what it became, which
positions and soft labels changed) and ``counts.json`` (rows, rows changed, tokens replaced, soft labels kept; for a
defense that may drop rows, ``paraphrase``, also ``n_dropped`` and the reasons). Its result carries the dataset's
``tokenizer_sha`` (students check their vocabulary against it). A ``paraphrase`` node has two base inputs, the
teacher's (its tokenizer) and the rewriter's (its weights), told apart by their node ids in the spec.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import atomic_write_json, read_jsonl, write_jsonl
from benchmark.lm.defenses.base import Rewrite, Scores, Vocab, plugin
from benchmark.lm.defenses.divergence import candidates, student_candidates
from benchmark.lm.stages.common import model_spec_of, teacher_info, tuned_of
from benchmark.lm.stages.dataset import channel_filter, channel_token_ids
from benchmark.providers.base import TunedNode, backend_for

__all__ = ["run"]


def _node_id(path: Path) -> str:
    return Path(path).name.rsplit("-", 1)[1]


def _scores(ctx: StageContext, rows: list[dict[str, Any]], own: Path, base_dir: Path, vocab: Vocab,
            need_base: bool, token_ok: Callable[[str], bool]) -> Scores:
    """Teacher-forced readouts by the own teacher, the other arms' teachers (in the spec's order) and the base
    (over the tokens the dataset's channel allows, ``token_ok``)."""
    from benchmark.lm.defenses.score import score_rows

    teachers = ctx.inputs_of("teacher")
    by_id = {_node_id(p): p for p in teachers.values()}
    order = [own, *[by_id[t] for t in ctx.node.spec["teachers"]]]
    model = model_spec_of(base_dir)
    backend = backend_for(model)
    allowed: list[int] | None = None
    argmax: list[list[list[int]]] = [[] for _ in rows]
    written: list[list[list[float]]] = [[] for _ in rows]
    for m, tdir in enumerate(order):
        loaded = backend.load(model, base_dir, tuned_of(tdir, model), threads=ctx.threads)
        if allowed is None:
            allowed = sorted(channel_token_ids(loaded.tokenizer, token_ok))
        am, lp, _ = score_rows(loaded, rows, system=teacher_info(tdir).system, allowed=allowed)
        for i in range(len(rows)):
            argmax[i].append(am[i])
            written[i].append(lp[i])
        ctx.log.info("scored %d rows with teacher %s", len(rows), Path(tdir).name)
        if ctx.progress is not None:
            ctx.progress(m + 1, len(order) + need_base)
    best: list[list[int | None]] = []
    if need_base:
        loaded = backend.load(model, base_dir, threads=ctx.threads)
        _, _, best = score_rows(loaded, rows, system=None, allowed=allowed or [], vocab=vocab)
        ctx.log.info("scored %d rows with the base %s", len(rows), model.name)
    return Scores(argmax=argmax, written_lp=written, base_best=best)


def _student_scores(ctx: StageContext, rows: list[dict[str, Any]], base_dir: Path, vocab: Vocab,
                    token_ok: Callable[[str], bool]) -> Scores:
    """``student_divergence``: a pilot student of the teacher's base trained on the undefended rows (the spec's
    recipe and seed, in a scratch folder that is not part of the payload), then the rows read by it and the base."""
    import tempfile

    from benchmark.lm.defenses.score import score_rows
    from benchmark.lm.stages.common import train_config

    pilot = ctx.node.spec["student"]
    model = model_spec_of(base_dir)
    backend = backend_for(model)
    base = backend.load(model, base_dir, threads=ctx.threads)
    allowed = sorted(channel_token_ids(base.tokenizer, token_ok))
    _, base_lp, best = score_rows(base, rows, system=None, allowed=allowed, vocab=vocab)
    with tempfile.TemporaryDirectory(prefix="slbench-pilot-") as tmp:
        made = backend.finetune(model, base_dir, rows, out=Path(tmp), train=train_config(pilot["train"]),
                                objective=pilot["objective"], seed=pilot["seed"], suffix="pilot", log=ctx.log,
                                threads=ctx.threads)
        student = backend.load(model, base_dir, TunedNode(made.tuned, Path(tmp)), threads=ctx.threads)
        _, student_lp, _ = score_rows(student, rows, system=None, allowed=allowed)
    ctx.log.info("scored %d rows with a pilot student and the base %s", len(rows), model.name)
    return Scores(argmax=[[] for _ in rows], written_lp=[[s, b] for s, b in zip(student_lp, base_lp, strict=True)],
                  base_best=best)


def _rewriter(ctx: StageContext, base_dir: Path) -> Rewrite:
    """``paraphrase``: the rewriter model's calls (greedy, the node's seed; a failed call gives None)."""
    from benchmark.lm.judges import backend_ask

    model = model_spec_of(base_dir)
    if model.name != ctx.node.spec["model"]:
        raise UserError(f"defense node {ctx.node.key}: its rewriter base is {model.name}, the spec names "
                        f"{ctx.node.spec['model']}")
    ask = backend_ask(model, base_dir, seed=int(ctx.node.spec["seed"]), threads=ctx.threads)

    def rewrite(prompts: list[str], system: str | None, max_tokens: int) -> list[str | None]:
        ctx.log.info("rewriting %d rows with %s", len(prompts), model.name)
        return ask(prompts, system, max_tokens)

    return rewrite


def run(ctx: StageContext) -> dict[str, Any]:
    """Transform the dataset's rows with the node's defense; write rows, changes and counts."""
    spec = ctx.node.spec
    ds_dir = ctx.input("dataset")
    ds_manifest = json.loads((ds_dir / "manifest.json").read_text(encoding="utf-8"))
    ds_spec = ds_manifest["spec"]
    rows = read_jsonl(ds_dir / "rows.jsonl")
    defense = plugin(spec["defense"], "defense node")
    channel = channel_filter(ds_spec)  # the dataset's channel: its text rule and soft-label token rule
    bases = {_node_id(p): p for p in ctx.inputs_of("base").values()}
    base_dir = bases[spec["base"]]  # the teacher's base (a paraphrase node also reads the rewriter's)
    vocab = None
    if rows and all(r.get("completion_ids") is not None for r in rows):
        model = model_spec_of(base_dir)
        tok = backend_for(model).load(model, base_dir, threads=ctx.threads, tokenizer_only=True).tokenizer
        vocab = Vocab.from_tokenizer(tok) if tok is not None else None
    scores = None
    rewrite = None
    if "rewriter" in defense.scorers:
        rewrite = _rewriter(ctx, bases[spec["rewriter"]])
    elif defense.scorers:
        if vocab is None:
            raise UserError(f"defense {defense.name}: the dataset {ds_dir.name} has no token ids (an API teacher?); "
                            "divergence defenses score rows with local teachers only")
        if "student" in defense.scorers:
            scores = _student_scores(ctx, rows, base_dir, vocab, channel.token_ok)
        else:
            own = next(p for p in ctx.inputs_of("teacher").values() if _node_id(p) == ds_spec["teacher"])
            scores = _scores(ctx, rows, own, base_dir, vocab, "base" in defense.scorers, channel.token_ok)
    params = {k: spec[k] for k in defense.params}
    if rewrite is not None:
        params["max_new_tokens"] = spec["max_new_tokens"]
    out, changes = defense.apply(rows, vocab=vocab, seed=spec["seed"], params=params, scores=scores,
                                 valid=channel.valid,  # the text rule the dataset kept its rows by
                                 rewrite=rewrite)
    write_jsonl(ctx.out / "rows.jsonl", out)
    changed = [c for c in changes if c is not None]
    dropped = Counter(str(c["dropped"]) for c in changed if c.get("dropped"))
    write_jsonl(ctx.out / "changes.jsonl", changed)
    n_tokens = sum(len(r.get("completion_ids") or []) for r in out)
    replaced = sum(len(c.get("positions", [])) for c in changed)
    onehot = sum(c.get("onehot", 0) for c in changed) + replaced
    counts = {"defense": defense.name, **params, "n_rows": len(out), "n_changed": len(changed),
              "n_tokens": n_tokens, "tokens_replaced": replaced,
              "candidates": (len((student_candidates if "student" in defense.scorers else candidates)(rows, scores, vocab))
                             if scores is not None and vocab is not None else None),
              "soft_labels_onehot": onehot if vocab is not None else None,
              "labels": ds_spec.get("labels", {}), "dataset": ds_manifest["id"]}
    if getattr(defense, "drops", False):  # rows a rewrite made invalid for the channel (or a failed call) left out
        counts.update(n_rows_in=len(rows), n_dropped=sum(dropped.values()), dropped=dict(sorted(dropped.items())),
                      n_same_numbers=len(rows) - len(changed) + sum(1 for c in changed if c.get("same_numbers")))
    atomic_write_json(ctx.out / "counts.json", counts)
    ctx.log.info("%s: %d of %d rows changed%s", defense.name, len(changed), len(rows),
                 f", {sum(dropped.values())} dropped" if dropped else "")
    return {**counts, "tokenizer_sha": ds_manifest["result"].get("tokenizer_sha"), "rule": defense.rule}
