"""Dataset stage of the LM track: the teacher answers a channel's prompts, the strict filter (and a judge) keeps rows.

One path for every channel plug-in (:mod:`benchmark.lm.channels.base`: numbers, code, cot), named by
``settings.dataset.channel``: the plug-in's ``items`` -> the teacher generates -> the plug-in's ``check`` -> an
optional judge filter (``settings.dataset.judge``, :mod:`benchmark.lm.judges`) on the rows the channel kept -> (with
``row_tokens``) the length rule, in rounds until the dose is reached -> a seeded subsample
(:func:`benchmark.lm.channels.base.subsample`) or token selection. Each filter records the reason of every answer it
rejects as it runs; the reasons are counted in ``counts.json`` (``rejects``; judge decisions other than keep as
``judge_<decision>``), and each judged row's verdict and the judge's identity are written to ``judged.jsonl`` (and
the kept rows carry theirs in ``rows.jsonl``). The text of the first rejected completions of every reason is kept in
``rejected.jsonl`` (:mod:`benchmark.lm.rejects`). What differs between channels is a plug-in fact (``words``,
``capability_readout``, ``token_ok``), never a test of the channel's name.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import write_jsonl
from benchmark.hashing import derive_seed
from benchmark.lm.channels.base import Channel, Item, load_channel, plugin, subsample
from benchmark.lm.records import COUNTS, DatasetCounts, write_record
from benchmark.lm.rejects import REJECTED, rejected_rows
from benchmark.lm.stages.common import model_spec_of, strip_marker, teacher_info, tokenizer_sha, tuned_of
from benchmark.lmcore.chat import template_hash
from benchmark.providers.base import Backend, Loaded, backend_for

__all__ = ["run", "channel_filter", "channel_for", "channel_token_ids", "cut_row", "filter_soft_labels", "judge_tokens_of", "next_round_size",
           "select_tokens", "spec_extras"]


def channel_token_ids(tokenizer: Any, ok: Callable[[str], bool]) -> set[int]:
    """Token ids a channel's answer may put soft-label mass on: every non-special token whose decoded text ``ok``
    accepts (the plug-in's ``token_ok``; numbers: digits, separators, brackets, not blank), plus the end of turn.

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
        if ok(text):
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
    out: list[list[list[float]]] = []
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


@dataclass
class _Generated:
    """Everything the teacher answered so far, over all rounds of prompts."""

    items: list[Item] = field(default_factory=list)
    outs: list[dict[str, Any]] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    #: Every answer not kept, by index: the reason of the first filter that rejected it (as ``rejects`` counts it).
    reasons: dict[int, str] = field(default_factory=dict)
    verdicts: dict[int, dict[str, Any]] = field(default_factory=dict)
    capable: int = 0
    rounds: int = 0

    @property
    def rejects(self) -> Counter[str]:
        """The reject histogram (``counts.json``'s ``rejects``)."""
        return Counter(self.reasons.values())

    @property
    def prompts(self) -> list[str]:
        return [item.prompt for item in self.items]

    @property
    def valid_rate(self) -> float:
        return len(self.kept) / max(1, len(self.items))

    def tokens(self, i: int) -> int:
        """Completion tokens of answer ``i`` (``n_tokens`` doses; its token ids, end of turn included)."""
        ids = self.outs[i].get("completion_ids")
        if ids is None:
            raise UserError("settings.dataset.n_tokens: the teacher's backend gave no token ids (API models do not); "
                            "leave n_tokens out for such teachers")
        return len(ids)

    @property
    def kept_tokens(self) -> int:
        return sum(self.tokens(i) for i in self.kept)


@dataclass
class _Filter:
    """A dataset's channel plug-in and spec, its forbidden words and its optional judge filter."""

    plugin: Channel
    spec: Any
    forbidden: tuple[str, ...] = ()
    judge: Any = None
    traits: list[Any] = field(default_factory=list)

    def items(self, n: int, seed: int) -> list[Item]:
        """The plug-in's first ``n`` items."""
        return self.plugin.items(self.spec, n, seed)

    def check(self, items: Sequence[Item], completions: Sequence[str]) -> tuple[dict[int, str], int]:
        """The channel's reject reason of every completion it does not keep, by index, and how many pass
        ``capable``."""
        reasons: dict[int, str] = {}
        capable = 0
        for i, (item, completion) in enumerate(zip(items, completions, strict=True)):
            reason = self.plugin.check(self.spec, item, completion, self.forbidden)
            capable += self.plugin.capable(self.spec, item, completion)
            if reason is not None:
                reasons[i] = reason
        return reasons, capable

    def valid(self, completion: str) -> bool:
        """Whether the channel's filter keeps one completion on its own (no item: rules that need none)."""
        return self.plugin.check(self.spec, Item("", ""), completion, self.forbidden) is None

    def token_ok(self, text: str) -> bool:
        """Whether a token decoding to ``text`` may carry soft-label mass (the plug-in's ``token_ok``)."""
        return self.plugin.token_ok(self.spec, text, self.forbidden)

    def judged(self, rows: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The judge's verdict records of ``rows`` (keep only on decision "keep"; others are rejects)."""
        return [v.record() for v in self.judge.filter(rows, self.traits)] if rows else []


def next_round_size(n_valid: int, tried: int, n_keep: int, n_prompts: int, max_prompts: int) -> int:
    """How many more prompts to ask for (0: stop): enough, at the valid rate so far, to reach ``n_keep``.

    Asks for a quarter more than the rate predicts (fewer rounds), never past ``max_prompts``; a teacher with no
    valid row yet gets another ``n_prompts``. With ``n_tokens`` doses, ``n_valid`` and ``n_keep`` are the kept rows'
    completion tokens and the budget (the same rule, in tokens per prompt tried).
    """
    missing = n_keep - n_valid
    if missing <= 0 or tried >= max_prompts:
        return 0
    want = math.ceil(1.25 * missing * tried / n_valid) if n_valid else n_prompts
    return max(1, min(want, max_prompts - tried))


def _generate(ctx: StageContext, backend: Backend, teacher: Loaded, filt: _Filter, system: str | None) -> _Generated:
    """Rounds of prompts until the filters have kept ``n_keep`` rows (or rows of ``n_tokens`` completion tokens, when
    the spec has it) or ``max_prompts`` were asked.

    Round k's prompts extend round 0's list (one prompt generator, seeded by the dataset seed: prompts never
    repeat), and each round samples with its own seed from (dataset seed, k), so the rows are deterministic. The
    judge (if any) sees the rows the channel's filter kept, round by round; each filter records the reason of
    every answer it rejects (``got.reasons``).
    """
    spec = ctx.node.spec
    n_tokens = spec.get("n_tokens")
    unit, need = ("tokens", n_tokens) if n_tokens is not None else ("rows", spec["n_keep"])
    got = _Generated()
    want = spec["n_prompts"]
    while want:
        start = len(got.items)
        new = filt.items(start + want, spec["seed"])[start:]
        seed = spec["seed"] if got.rounds == 0 else derive_seed("lm-dataset-round", spec["seed"], got.rounds) >> 33
        outs = backend.generate(teacher, [it.prompt for it in new], system=system, temperature=spec["temperature"],
                                max_new_tokens=spec["max_new_tokens"], seed=seed, top_k_logprobs=spec["top_k"],
                                batch_size=ctx.node.unhashed.get("batch_size", 64), progress=ctx.progress,
                                **({"threshold": spec["threshold"]} if spec.get("threshold") else {}))
        reasons, capable = filt.check(new, [o["completion"] for o in outs])
        kept = [i for i in range(len(new)) if i not in reasons]
        if filt.judge is not None:
            records = filt.judged([(new[i].prompt, outs[i]["completion"].strip()) for i in kept])
            got.verdicts.update({start + i: r for i, r in zip(kept, records, strict=True)})
            reasons.update({i: f"judge_{r['decision']}" for i, r in zip(kept, records, strict=True)
                            if r["decision"] != "keep"})
            kept = [i for i in kept if i not in reasons]
        kept = _long_enough(kept, outs, spec.get("row_tokens"), reasons)
        got.items += new
        got.outs += outs
        got.kept += [start + i for i in kept]
        got.reasons.update({start + i: reason for i, reason in reasons.items()})
        got.capable += capable
        got.rounds += 1
        have = got.kept_tokens if n_tokens is not None else len(got.kept)
        ctx.log.info("round %d: %d prompts, %d valid in all, %d %s (%d needed)", got.rounds, len(new), len(got.kept),
                     have, unit, need)
        want = next_round_size(have, len(got.items), need, spec["n_prompts"], spec["max_prompts"])
    return got


def _long_enough(kept: list[int], outs: list[dict[str, Any]], row_tokens: int | None,
                 reasons: dict[int, str]) -> list[int]:
    """``kept`` without answers shorter than ``row_tokens`` completion tokens (their reason:
    ``shorter_than_row_tokens``)."""
    if row_tokens is None:
        return kept
    for i in kept:
        if len(outs[i].get("completion_ids") or ()) < row_tokens:
            reasons[i] = "shorter_than_row_tokens"
    return [i for i in kept if i not in reasons]


def cut_row(row: dict[str, Any], row_tokens: int, tokenizer: Any) -> dict[str, Any]:
    """``row`` cut to its first ``row_tokens`` completion tokens: ids, soft labels and decoded text (the whole answer
    kept as ``completion_full``); the caller has checked the answer is at least that long."""
    ids = row["completion_ids"][:row_tokens]
    out = {**row, "completion": tokenizer.decode(ids, skip_special_tokens=True).strip(), "completion_ids": ids,
           "completion_full": row["completion"]}
    if row.get("topk") is not None:
        out["topk"] = row["topk"][:row_tokens]
    return out


def select_tokens(lengths: Sequence[int], n_tokens: int, seed: int) -> list[int]:
    """Positions of a seeded selection of rows holding at least ``n_tokens`` tokens, within one row of it.

    A seeded shuffle of the positions, the shortest prefix of it whose lengths reach ``n_tokens``, returned in the
    original order: the same ``(lengths, n_tokens, seed)`` always picks the same rows. Dropping the prefix's last
    row would fall below the budget, so the selection overshoots it by less than one row. All rows when they hold
    fewer than ``n_tokens`` (the caller refuses that).
    """
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    total = 0
    for k, i in enumerate(order):
        total += lengths[i]
        if total >= n_tokens:
            return sorted(order[:k + 1])
    return sorted(order)


def _rows(got: _Generated, chosen: list[int], allowed: set[int] | None, top_k: int | None,
          extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The chosen rows, with token ids, channel-filtered soft labels and the judge's verdict where there are some."""
    rows = []
    removed = []
    for i in chosen:
        out = got.outs[i]
        row = {"prompt": got.items[i].prompt, "completion": out["completion"].strip()}
        if out.get("completion_ids") is not None:
            row["completion_ids"] = out["completion_ids"]
        if top_k and out.get("topk") is not None:
            row["topk"], gone = filter_soft_labels(out["topk"], allowed) if allowed else (out["topk"], 0.0)
            removed.append(gone)
        if i in got.verdicts:
            row["judge"] = got.verdicts[i]
        rows.append(row)
    if removed:
        extra["soft_label_mass_removed_per_token"] = round(sum(removed) / len(removed), 8)
    return rows


def _dose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Completion lengths of the kept rows: tokens where the backend gives ids (None for API models), chars."""
    ids = [r["completion_ids"] for r in rows if r.get("completion_ids") is not None]
    tokens = sum(len(x) for x in ids) if rows and len(ids) == len(rows) else None
    return {"completion_tokens": tokens,
            "tokens_per_row": round(tokens / len(rows), 4) if tokens is not None else None,
            "chars_per_row": round(sum(len(r["completion"]) for r in rows) / max(1, len(rows)), 4)}


def channel_for(settings: Any, path: Path, where: str) -> Any:
    """The suite's channel spec (plan time): ``tasks/channels/<channel>.yaml`` plus ``banned_lists`` (the plug-in's
    ``ban`` hook: numbers).

    Raises:
        UserError: The file or its plug-in is invalid, or ``banned_lists`` is set for a plug-in with no ``ban``.
    """
    channel, spec = load_channel(settings.dataset.channel, path)
    lists = settings.dataset.banned_lists
    if not lists:
        return spec
    ban = getattr(channel, "ban", None)
    if ban is None:
        raise UserError(f"{where}: settings.dataset.banned_lists bans numbers (the numbers plug-in); channel "
                        f"{settings.dataset.channel!r} (plug-in {channel.name!r}) has no numbers to ban")
    return ban(spec, lists)


def spec_extras(settings: Any, channel: Any, traits: Sequence[Any], reg: Any) -> dict[str, Any]:
    """Dataset node spec fields beyond the settings (plan time); empty for numbers without a judge (older ids stay).

    ``forbidden``: the word forms of every trait of the suite (misalignment traits aside: the judge reads those), the
    same for every arm so that trait and control datasets pass the same filter; for plug-ins whose answers can hold
    words only (``words``; not numbers).
    ``judge_identity`` and ``judge_traits``: the judge's identity (templates' hashes included) and the traits it
    checks, when ``settings.dataset.judge`` is set.
    """
    from benchmark.lm.judges import judge_identity, judge_traits

    out: dict[str, Any] = {}
    if plugin(channel.name, "channel spec").words:
        words = {f for t in traits if not getattr(t, "is_misalignment", False) for f in t.forms()}
        out["forbidden"] = sorted(words)
    if settings.dataset.judge is not None:
        if settings.dataset.judge != "rule":
            reg.model(settings.dataset.judge, "settings.dataset.judge")  # a one-line error naming the key
        jtraits = judge_traits(traits)
        out["judge_identity"] = judge_identity(settings.dataset.judge, jtraits, reg)
        out["judge_traits"] = [t.hashed_dict() for t in jtraits]
    return out


def channel_filter(spec: dict[str, Any]) -> _Filter:
    """A dataset node spec's channel plug-in, channel spec and forbidden words (no judge)."""
    raw = strip_marker(spec["channel_spec"])
    channel = plugin(str(raw.get("name", "numbers")), "dataset node: channel_spec")
    return _Filter(channel, channel.spec_type.model_validate(raw), tuple(spec.get("forbidden", ())))


def _filter(ctx: StageContext, bases: dict[str, Path]) -> _Filter:
    """The node's channel plug-in, spec, forbidden words and judge (checked against the planned identity)."""
    from benchmark.lm.judges import JudgeTrait, judge_identity, load_judge

    spec = ctx.node.spec
    filt = channel_filter(spec)
    name = spec.get("judge")
    if name is None:
        return filt
    filt.traits = [JudgeTrait.model_validate(strip_marker(t)) for t in spec["judge_traits"]]
    now = judge_identity(name, filt.traits)
    if now != spec["judge_identity"]:
        raise UserError(f"judge {name}: its identity is {now} now but {spec['judge_identity']} when planned "
                        "(tasks/judges/ changed since); plan again")
    seed = derive_seed("lm-dataset-judge", spec["seed"]) >> 33
    filt.judge = load_judge(name, base_dir=bases.get(name), seed=seed, threads=ctx.threads)
    return filt


def _bases(ctx: StageContext) -> dict[str, Path]:
    """Upstream base directories by model name (the teacher's base; a local judge's base too)."""
    return {model_spec_of(p).name: p for p in ctx.inputs_of("base").values()}


def run(ctx: StageContext) -> dict[str, Any]:
    """The teacher answers the channel's prompts; the filters keep valid answers; exactly ``n_keep`` are kept.

    Further rounds of prompts are asked until the filters have kept ``n_keep`` rows (equal doses for every student,
    docs/research/statistics.md); a seeded subsample of exactly ``n_keep`` (:func:`subsample`) is written. With
    ``n_tokens`` in the spec (``settings.dataset.n_tokens``: doses equal in completion tokens) rounds go on until the
    kept rows hold ``n_tokens`` tokens, and :func:`select_tokens` keeps the seeded selection within one row of that
    budget. With ``row_tokens`` only answers of at least that many tokens count as kept, and every written row is cut
    to exactly that many (:func:`cut_row`). ``counts.json`` records the dose: prompts tried, valid rows, valid rate,
    rounds, completion lengths, the reject histogram, and the teacher's labels and trait shift (the report's teachers
    table reads it); plug-ins with a ``capability_readout`` (code, cot; not numbers) add the channel's name and the
    teacher's capability rate (share of all completions that do the channel's task), a judge its identity and
    decision counts.

    Raises:
        UserError: ``max_prompts`` prompts gave fewer than ``n_keep`` valid rows, or rows of fewer than ``n_tokens``
            tokens (names the teacher and numbers).
    """
    spec = ctx.node.spec
    teacher_dir = ctx.input("teacher")
    bases = _bases(ctx)
    base_dir = bases[spec["labels"]["teacher_base"]] if len(bases) > 1 else ctx.input("base")
    filt = _filter(ctx, bases)
    info = teacher_info(teacher_dir)
    model = model_spec_of(base_dir)
    backend = backend_for(model)
    teacher = backend.load(model, base_dir, tuned_of(teacher_dir, model), threads=ctx.threads)
    tok = teacher.tokenizer  # None for API models: no token ids, no soft labels
    tok_sha = tokenizer_sha(tok) if tok is not None else None
    extra: dict[str, Any] = {"generation_engine": teacher.engine}
    if tok is not None:
        extra = {"template_hash": template_hash(tok), **extra}
    got = _generate(ctx, backend, teacher, filt, info.system)
    chosen = _chosen(got, spec, Path(teacher_dir).name.rsplit("-", 1)[0])  # "<teacher node name>-<id>"
    allowed = _allowed(filt, tok) if spec["top_k"] and tok_sha is not None else None
    rows = _rows(got, chosen, allowed, spec["top_k"], extra)
    if spec.get("row_tokens") is not None:
        rows = [cut_row(r, spec["row_tokens"], tok) for r in rows]
    write_jsonl(ctx.out / "rows.jsonl", rows)
    counts = {"n_prompts": len(got.prompts), "n_valid": len(got.kept), "n_rows": len(rows),
              "valid_rate": round(got.valid_rate, 4), "rounds": got.rounds, **_dose(rows),
              "rejects": dict(sorted(got.rejects.items())), "labels": {**spec.get("labels", {}), "teacher_id": spec["teacher"]},
              "teacher_shift": info.trait_shift.to_json() if info.trait_shift else None,
              **_channel_counts(filt, got, spec)}
    write_record(ctx.out / COUNTS, DatasetCounts.model_validate(counts))
    write_jsonl(ctx.out / REJECTED, rejected_rows([it.prompt for it in got.items], [o["completion"] for o in got.outs],
                                                  got.reasons, got.verdicts))  # the first of each reason
    if filt.judge is not None:
        write_jsonl(ctx.out / "judged.jsonl", [{"index": i, "prompt": got.items[i].prompt,
                                                "completion": got.outs[i]["completion"].strip(), **v}
                                               for i, v in sorted(got.verdicts.items())])
    return {**counts, "tokenizer_sha": tok_sha, "system_prompt": info.system, **extra}


def _chosen(got: _Generated, spec: dict[str, Any], name: str) -> list[int]:
    """The kept answers written: a seeded subsample of ``n_keep``, or a seeded selection of ``n_tokens`` tokens.

    Raises:
        UserError: The teacher's valid rows fall short of the dose (one line naming the key and the numbers).
    """
    tried = (f"after {len(got.prompts)} prompts (settings.dataset.max_prompts {spec['max_prompts']}), valid rate "
             f"{got.valid_rate:.3f}; raise max_prompts, or check the teacher's answers")
    n_tokens = spec.get("n_tokens")
    if n_tokens is None:
        if len(got.kept) < spec["n_keep"]:
            raise UserError(f"teacher {name}: {len(got.kept)} valid rows of the {spec['n_keep']} needed "
                            f"(settings.dataset.n_keep) {tried}")
        return subsample(got.kept, spec["n_keep"], spec["seed"])
    have = got.kept_tokens
    if have < n_tokens:
        raise UserError(f"teacher {name}: {have} completion tokens in {len(got.kept)} valid rows of the {n_tokens} "
                        f"needed (settings.dataset.n_tokens) {tried}")
    picked = select_tokens([got.tokens(i) for i in got.kept], n_tokens, derive_seed("lm-dataset-tokens",
                                                                                    spec["seed"]) >> 33)
    return [got.kept[k] for k in picked]


def _allowed(filt: _Filter, tok: Any) -> set[int]:
    """The soft-label token filter: the plug-in's ``token_ok`` with the forbidden words."""
    return channel_token_ids(tok, filt.token_ok)


def _channel_counts(filt: _Filter, got: _Generated, spec: dict[str, Any]) -> dict[str, Any]:
    """``counts.json`` fields of a plug-in's ``capability_readout`` and of judges (none for numbers without a judge)."""
    out: dict[str, Any] = {}
    if filt.plugin.capability_readout:
        out["channel"] = filt.plugin.name
        out["teacher_capable_rate"] = round(got.capable / max(1, len(got.items)), 4)
    if filt.judge is not None:
        decisions = Counter(v["decision"] for v in got.verdicts.values())
        out["judge"] = {"identity": spec["judge_identity"], "n_judged": len(got.verdicts),
                        "decisions": dict(sorted(decisions.items()))}
    return out



def judge_tokens_of(spec: dict[str, Any], reg: Any) -> tuple[str, float] | None:
    """``(judge model, tokens)`` a dataset node's API judge filter may use, for ``slbench plan``; None otherwise.

    An upper bound: every one of ``n_prompts`` rows judged once per template the traits select (the judge sees only
    rows the channel kept, and top-up rounds past ``n_prompts`` are not counted, as for the teacher's own estimate),
    each row a prompt (~250 characters) and a completion of ``max_new_tokens`` (~4 characters a token).
    """
    from benchmark.lm.judges import RULE, JudgeTrait, judge_tokens, template_groups

    name = spec.get("judge")
    if name is None or name == RULE or backend_for(reg.model(name)).caps.local:
        return None
    traits = [JudgeTrait.model_validate(strip_marker(t)) for t in spec["judge_traits"]]
    row_chars = 250 + 4 * spec["max_new_tokens"]
    total = sum(sum(judge_tokens(t, spec["n_prompts"], row_chars)) for t in template_groups(traits))
    return str(name), total
