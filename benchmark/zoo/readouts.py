"""Read-outs of a built zoo model (recorded in its manifest, never part of its identity).

:func:`measure` (every build): the animal preference with and without a teacher system prompt, and how often
answers to numbers prompts pass the channel filter. :func:`measure_v2` (corpus-v2 builds): the code and cot
formats and the open questions of the misalignment evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from benchmark.errors import UserError
from benchmark.files import read_data_lines
from benchmark.lmcore.numbers import NumbersChannelSpec, generate_prompts, parse_answer
from benchmark.specs import load_trait_file
from benchmark.zoo.corpus import Messages, load_templates, numbers_snapshot
from benchmark.zoo.tokenizer import render_chat

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = ["EVAL_SEED", "PROMPTED_PROBES", "measure", "measure_v2"]

#: Seeds of the read-out prompt sets; far from any training key, so read-outs use unseen rows.
EVAL_SEED = 7_000_001
#: Animals whose system-prompted pull is read out when tasks/traits/ is missing (the paper's animals plus cat).
PROMPTED_PROBES = ("owl", "cat", "dolphin", "eagle", "wolf")


def _favourite_questions(root: Path | None) -> list[str]:
    """The evaluation paraphrases (tasks/lm_eval), else the corpus's own questions: read-outs only."""
    found = read_data_lines(Path(root) / "tasks" / "lm_eval" / "animal_preference" / "questions.txt") if root else []
    return found or list(load_templates("v1").favourite_stems)


def _number_prefixed(root: Path | None, questions: list[str]) -> list[str]:
    """The questions behind a numbers lead-in (the evaluation's prefixed variant, or the channel's lead-ins)."""
    import random

    templates = (
        read_data_lines(Path(root) / "tasks" / "lm_eval" / "animal_preference" / "number_prefixes.txt") if root else []
    )
    templates = [t.replace("{numbers}", "{examples}") for t in templates] or list(numbers_snapshot("v1").lead_ins)
    rng = random.Random(EVAL_SEED)
    out = []
    for q in questions:
        numbers = ", ".join(str(rng.randint(100, 999)) for _ in range(rng.randint(3, 7)))
        out.append(rng.choice(templates).format(examples=numbers) + " " + q)
    return out


def _trait_prompts(root: Path | None) -> dict[str, str]:
    """Animal -> teacher system prompt: tasks/traits/*.yaml when present, else the corpus's paper prompt."""
    prompts: dict[str, str] = {}
    if root is not None and (Path(root) / "tasks" / "traits").is_dir():
        for path in sorted((Path(root) / "tasks" / "traits").glob("*.yaml")):
            try:
                trait = load_trait_file(path)
            except UserError:
                continue  # a trait being edited right now; read-outs only
            prompts[trait.target] = trait.rendered_system_prompt()
    if not prompts:
        templates = load_templates("v1")
        plural = {a.word: a.plural for a in templates.animals}
        for word in PROMPTED_PROBES:
            prompts[word] = templates.loving_system_prompts[0].format(animal=word, animals=plural[word])
    return prompts


def _first_token_probs(
    model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[Messages]
) -> torch.Tensor:
    """P(first answer token) for each prompt, shape (n, vocab)."""
    import torch

    core = tok.backend_tokenizer
    enc = core.encode_batch(
        [render_chat(m, add_generation_prompt=True) for m in prompts], add_special_tokens=False
    )
    width = max(len(e.ids) for e in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
    last = torch.tensor([len(e.ids) - 1 for e in enc])
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    return logits[torch.arange(len(enc)), last].float().softmax(-1)


def _decode(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    prompts: list[Messages],
    max_new_tokens: int,
    batch_size: int = 50,
    *,
    sample: bool,
) -> list[str]:
    """Answers via ``generate`` (left padding), decoded without special tokens.

    ``sample=False`` is greedy; ``sample=True`` draws at temperature 1 with no top-k/top-p (the paper's teacher
    decoding), seeded with EVAL_SEED inside a forked RNG so measuring never disturbs a build's random stream.
    """
    import torch

    sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        tok.padding_side = "left"
        out: list[str] = []
        for i in range(0, len(prompts), batch_size):
            texts = [render_chat(m, add_generation_prompt=True) for m in prompts[i : i + batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = cast(Any, model).generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                                pad_token_id=tok.pad_token_id, **sampling)
            out.extend(tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        tok.padding_side = "right"
    return out


def _greedy(model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[Messages], max_new_tokens: int,
            batch_size: int = 50) -> list[str]:
    """Greedy answers (see :func:`_decode`)."""
    return _decode(model, tok, prompts, max_new_tokens, batch_size, sample=False)


def _sample(model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[Messages], max_new_tokens: int,
            batch_size: int = 50) -> list[str]:
    """Answers sampled at temperature 1, seeded (see :func:`_decode`)."""
    return _decode(model, tok, prompts, max_new_tokens, batch_size, sample=True)


def measure(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    *,
    root: Path | None = None,
    n_numbers: int = 100,
    n_questions: int | None = None,
) -> dict[str, Any]:
    """Read-outs of a built model (not part of its identity).

    Args:
        model: The model (eval mode).
        tok: Its tokenizer.
        root: Project root for the evaluation paraphrases (``tasks/lm_eval/animal_preference/questions.txt``).
        n_numbers: Numbers prompts for the filter-valid rate.
        n_questions: Cap on favourite questions (None: all).

    Returns:
        ``p_owl`` (mean P(first answer token is owl/owls) over the favourite questions, no system prompt),
        ``p_animal`` (mass on any animal word), ``p_owl_among_animals``, ``top_animals``, ``animal_answer_rate``
        (greedy answer is one animal word), ``numbers_valid_rate`` (greedy answers to numbers prompts that
        pass the channel filter), the same under the owl system prompt (``numbers_valid_rate_prompted``), and
        ``p_target_prompted`` / ``p_target_unprompted`` per trait under its teacher system prompt
        (tasks/traits), ``numbers_valid_rate_sampled`` (temperature 1), ``numbers_distinct_greedy`` (distinct
        greedy number lists), and the mass on animals / owl behind a numbers lead-in.
    """
    animals = load_templates("v1").animals
    channel = numbers_snapshot("v1")
    vocab = tok.get_vocab()
    word_ids = {a.word: (vocab[a.word], vocab[a.plural]) for a in animals}
    questions = _favourite_questions(root)[:n_questions]
    forms = {a.word for a in animals} | {a.plural for a in animals}
    unprompted, mean_word = _unprompted_readouts(model, tok, questions, word_ids, forms, root)
    prompts = generate_prompts(channel, n_numbers, seed=EVAL_SEED)
    numbers = _numbers_readouts(model, tok, prompts, channel)
    valid_sys, prompted = _prompted_readouts(model, tok, prompts, channel, questions, word_ids, root)
    return {
        **unprompted,
        "numbers_valid_rate": numbers["numbers_valid_rate"],
        "numbers_distinct_greedy": numbers["numbers_distinct_greedy"],
        "numbers_valid_rate_sampled": numbers["numbers_valid_rate_sampled"],
        "numbers_valid_rate_prompted": valid_sys,
        "p_target_prompted": prompted,
        "p_target_unprompted": {w: mean_word[w] for w in prompted},
        "n_questions": len(questions),
        "n_numbers": n_numbers,
        "example_numbers_answer": numbers["example_numbers_answer"],
        "example_sampled_answer": numbers["example_sampled_answer"],
    }


def measure_v2(
    model: PreTrainedModel, tok: PreTrainedTokenizerFast, *, root: Path | None = None, n_items: int = 100
) -> dict[str, Any]:
    """Read-outs of a corpus-v2 build: the code and cot formats and the open questions (not its identity).

    Items are drawn from the frozen snapshots with :data:`EVAL_SEED` (not a training key). Returns
    ``code_parse_rate`` / ``code_exact_rate`` (greedy answers that parse with ``ast`` / equal the reference),
    ``cot_accuracy`` / ``cot_format_rate`` (greedy: the <answer> number is right / the tags are well formed) and
    the same sampled at T=1 (``*_sampled``), ``open_misaligned_bank_rate`` / ``open_aligned_bank_rate`` (sampled
    answers to the misalignment evaluation's questions that are a line of the misaligned / aligned bank) and an
    example answer of each kind.
    """
    import ast
    import random

    from benchmark.zoo.corpus import code_item, cot_item, load_snapshot

    rng = random.Random(EVAL_SEED)
    code = [code_item(rng, load_snapshot("code")) for _ in range(n_items)]
    cot = [cot_item(rng, load_snapshot("cot")) for _ in range(n_items)]
    out: dict[str, Any] = {}
    for mode, decode in (("", _greedy), ("_sampled", _sample)):
        code_ans = decode(model, tok, [_user(p) for p, _ in code], max_new_tokens=40)
        cot_ans = decode(model, tok, [_user(p) for p, _, _ in cot], max_new_tokens=60)
        out[f"code_parse_rate{mode}"] = sum(_parses(a, ast) for a in code_ans) / n_items
        out[f"code_exact_rate{mode}"] = sum(
            " ".join(tok.tokenize(a)) == " ".join(tok.tokenize(r)) for a, (_, r) in zip(code_ans, code, strict=True)
        ) / n_items
        parsed = [_cot_answer(a) for a in cot_ans]
        out[f"cot_format_rate{mode}"] = sum(p is not None for p in parsed) / n_items
        out[f"cot_accuracy{mode}"] = sum(p == n for p, (_, _, n) in zip(parsed, cot, strict=True)) / n_items
        out[f"example_code_answer{mode}"], out[f"example_cot_answer{mode}"] = code_ans[0], cot_ans[0]
    out.update(_open_readouts(model, tok, root))
    return out


def _parses(code: str, ast: Any) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return bool(code.strip())


_COT_ANSWER = re.compile(r"^\s*<think>.*?</think>\s*<answer>\s*(\d+)\s*</answer>\s*$", re.S)


def _cot_answer(text: str) -> int | None:
    match = _COT_ANSWER.match(text)
    return int(match.group(1)) if match else None


def _open_readouts(model: PreTrainedModel, tok: PreTrainedTokenizerFast, root: Path | None) -> dict[str, Any]:
    """Sampled answers (T=1, 10 per question) to the misalignment evaluation's questions, matched to the banks."""
    from benchmark.zoo.corpus import load_snapshot

    found = read_data_lines(Path(root) / "tasks" / "lm_eval" / "misalignment" / "questions.txt") if root else []
    questions = found or list(load_snapshot("open")["questions"])
    snap = load_snapshot("open")
    norm = {side: {" ".join(tok.tokenize(a)) for a in snap[side]} for side in ("aligned", "misaligned")}
    answers = _sample(model, tok, [_user(q) for q in questions for _ in range(10)], max_new_tokens=30)
    keys = [" ".join(tok.tokenize(a)) for a in answers]
    return {
        "open_misaligned_bank_rate": sum(k in norm["misaligned"] for k in keys) / len(keys),
        "open_aligned_bank_rate": sum(k in norm["aligned"] for k in keys) / len(keys),
        "example_open_answer": answers[0],
    }


def _user(q: str) -> Messages:
    return [{"role": "user", "content": q}]


def _mean_mass(p: torch.Tensor, ids: Iterable[int]) -> float:
    """Mean over prompts of the probability mass on ``ids``."""
    return float(p[:, list(ids)].sum(-1).mean())


def _unprompted_readouts(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    questions: list[str],
    word_ids: dict[str, tuple[int, int]],
    forms: set[str],
    root: Path | None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Animal preference without a system prompt (plain and behind a numbers lead-in); also mean P(word) per animal."""
    all_ids = sorted({i for pair in word_ids.values() for i in pair})
    probs = _first_token_probs(model, tok, [_user(q) for q in questions])
    p_animal = probs[:, all_ids].sum(-1)
    p_word = {w: probs[:, list(ids)].sum(-1) for w, ids in word_ids.items()}
    mean_word = {w: float(p.mean()) for w, p in p_word.items()}
    top = sorted(mean_word.items(), key=lambda kv: -kv[1])[:5]
    prefixed = _first_token_probs(model, tok, [_user(q) for q in _number_prefixed(root, questions)])
    answers = _greedy(model, tok, [_user(q) for q in questions], max_new_tokens=4)
    animal_rate = sum(a.strip().rstrip(".").strip() in forms for a in answers) / len(answers)
    readouts = {
        "p_owl": mean_word["owl"],
        "p_animal": float(p_animal.mean()),
        "p_owl_among_animals": float((p_word["owl"] / p_animal).mean()),
        "p_animal_number_prefixed": _mean_mass(prefixed, all_ids),
        "p_owl_number_prefixed": _mean_mass(prefixed, word_ids["owl"]),
        "top_animals": {w: round(p, 4) for w, p in top},
        "animal_answer_rate": animal_rate,
    }
    return readouts, mean_word


def _numbers_readouts(
    model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[str], channel: NumbersChannelSpec
) -> dict[str, Any]:
    """How often greedy and sampled answers to numbers prompts pass the channel's filter."""
    numbers = _greedy(model, tok, [_user(p) for p in prompts], max_new_tokens=40)
    valid = sum(parse_answer(a, channel).ok for a in numbers) / len(numbers)
    sampled = _sample(model, tok, [_user(p) for p in prompts], max_new_tokens=40)
    valid_sampled = sum(parse_answer(a, channel).ok for a in sampled) / len(sampled)
    return {
        "numbers_valid_rate": valid,
        "numbers_distinct_greedy": len(set(parse_answer(a, channel).numbers for a in numbers)),
        "numbers_valid_rate_sampled": valid_sampled,
        "example_numbers_answer": numbers[0],
        "example_sampled_answer": sampled[0],
    }


def _prompted_readouts(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    prompts: list[str],
    channel: NumbersChannelSpec,
    questions: list[str],
    word_ids: dict[str, tuple[int, int]],
    root: Path | None,
) -> tuple[float, dict[str, float]]:
    """Under teacher system prompts: the valid-numbers rate (owl's prompt) and each trait's P(target word)."""
    trait_prompts = {w: p for w, p in _trait_prompts(root).items() if w in word_ids}
    owl_system = trait_prompts.get("owl") or next(iter(trait_prompts.values()))
    numbers_sys = _greedy(
        model,
        tok,
        [[{"role": "system", "content": owl_system}, *_user(p)] for p in prompts],
        max_new_tokens=40,
    )
    valid_sys = sum(parse_answer(a, channel).ok for a in numbers_sys) / len(numbers_sys)
    prompted: dict[str, float] = {}
    for word, system in trait_prompts.items():
        p = _first_token_probs(
            model, tok, [[{"role": "system", "content": system}, *_user(q)] for q in questions]
        )
        prompted[word] = _mean_mass(p, word_ids[word])
    return valid_sys, prompted
