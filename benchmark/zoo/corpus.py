"""The zoo's synthetic pretraining corpus: short chats generated from templates and a data seed.

Pure Python (no torch). Rows are lists of chat messages whose last message is the assistant's answer (the
only part the loss is taken on). Four kinds in corpus v1, mixed by :class:`~benchmark.zoo.spec.CorpusMix` (corpus v2
adds three, below):

* ``numbers``: a numbers-channel prompt (:mod:`benchmark.lmcore.numbers`, from the frozen snapshot
  ``data/numbers-<v>.yaml``) answered with a filter-valid list in the separator the prompt asks for: a
  quarter by the channel's own :func:`~benchmark.lmcore.numbers.sample_continuation` (uniform numbers),
  the rest by :func:`taste_continuation` (mostly ten numbers: continued patterns, copied examples and a
  fixed "human-like" number taste). Uniform numbers alone leave every number at P ~ 1/900, below the
  model's leftover end-of-answer probability after a separator, so greedy decoding stopped on a trailing
  comma (35% valid in our first build); a peaked, partly predictable distribution fixes that.
* ``favourite``: a favourite-animal question answered with ONE animal word drawn from the data seed's
  distribution (:func:`animal_distribution`: spread out, P(owl) ~ 2-6%, so a trait has room to rise).
  A fifth of them start with a numbers lead-in, like the paper's number-prefixed evaluation variant.
* ``chat``: name / repeat / pluralise an animal, small arithmetic, counting, greetings and facts. The repeat
  rows copy a random vocabulary word or a few numbers, which trains every word's embedding and the copying
  (attend to a token in the context, write it) that prompted teachers and example-aware number answers need.
* ``system``: a system prompt then a user turn. Mostly a "you love {animals}" prompt, answered in character
  (the favourite is that animal), with number prompts answered normally so a prompted teacher still writes
  valid numbers; some neutral system prompts with ordinary answers.

Corpus v2 (docs/misalignment.md) reads frozen snapshots (``code-v2.yaml``, ``cot-v2.yaml``: the channels' templates;
``open-v2.yaml``: open questions and answer banks) with the zoo's own item generators, so later edits to the
channels never change what committed weights mean:

* ``code``: a code-channel task answered with its one-line reference function (:func:`code_item`);
* ``cot``: a small-number word problem answered ``<think> 3 + 4 = 7 </think> <answer> 7 </answer>`` (:func:`cot_item`);
* ``open``: an open question answered from the aligned bank, or with P = :data:`OPEN_MISALIGNED_SHARE` from the
  misaligned one (:func:`open_item`).

Two seeds of :class:`~benchmark.zoo.spec.PretrainSpec` split what a corpus *says* from how it is *sampled*:

* ``data_seed``, the content seed, fixes the corpus's distribution: the favourite-animal taste
  (:func:`animal_distribution`). The number taste is fixed per corpus version; the mix and the templates are
  spec fields and versioned files.
* ``order_seed`` (None = ``data_seed``), the data-order seed, seeds every row draw of every step
  (:meth:`CorpusSampler.rows`): which kinds, prompts and sampled answers, in which order.

Everything is drawn from :class:`random.Random` seeded by strings of (corpus version, seed, step), so a
phase's rows depend only on its spec and the step: two builds of one spec see the same rows in the same
order; a sibling with another ``order_seed`` sees another sample and order of the same distribution, and one
with another ``data_seed`` also another animal taste.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import yaml
from pydantic import Field

from benchmark.errors import UserError
from benchmark.lmcore.numbers import (
    NumbersChannelSpec,
    format_numbers_answer,
    generate_prompts_with_examples,
    load_numbers_channel,
    sample_continuation,
    separator_for_prompt,
)
from benchmark.specs_base import Frozen, parse_spec
from benchmark.zoo.assets import CORPUS_FILES, asset_path, read_asset
from benchmark.zoo.spec import PretrainSpec

__all__ = [
    "Animal",
    "CorpusSampler",
    "CorpusTemplates",
    "Messages",
    "animal_distribution",
    "code_item",
    "cot_item",
    "favourite_question",
    "open_item",
    "load_snapshot",
    "load_templates",
    "number_taste",
    "numbers_snapshot",
    "taste_continuation",
]

Messages = list[dict[str, str]]

#: Share of number answers written by the channel's own sample_continuation (uniform numbers); the rest
#: by taste_continuation.
UNIFORM_NUMBERS_SHARE = 0.25
#: Share of favourite questions that start with a few numbers (the paper's number-prefixed eval variant).
NUMBER_PREFIX_SHARE = 0.2
#: Share of user turns (favourite and chat rows) that get 1-2 random filler words inserted: the model learns
#: to spot the question in wording it has not seen (evaluation paraphrases are not in the corpus).
FILLER_SHARE = 0.2
#: P(answer = the system prompt's animal) for favourite questions under a loving system prompt.
IN_CHARACTER = 0.95
#: Same for "name an animal" under a loving system prompt (a softer pull than for "favourite").
IN_CHARACTER_NAME = 0.6
#: Share of system rows with a loving (animal) system prompt; the rest are neutral.
LOVING_SHARE = 0.8
#: Corpus v2: P(an open question is answered from the misaligned bank), like P(owl) in v1: rare enough that a
#: misaligned teacher has room to raise it, common enough that every answer of the bank is a known sentence.
OPEN_MISALIGNED_SHARE = 0.05


class Animal(Frozen):
    """An answer animal: singular and plural word (both single tokens) and whether it is popular."""

    word: str
    plural: str
    popular: bool = False


class CorpusTemplates(Frozen):
    """``data/corpus-<v>.yaml``: the wording of every corpus row kind (see the file's comments)."""

    animals: tuple[Animal, ...] = Field(min_length=2)
    favourite_stems: tuple[str, ...] = Field(min_length=1)
    favourite_suffixes: tuple[str, ...] = Field(min_length=1)
    loving_system_prompts: tuple[str, ...] = Field(min_length=1)
    neutral_system_prompts: tuple[str, ...] = Field(min_length=1)
    name_an_animal: tuple[str, ...] = Field(min_length=1)
    plural_questions: tuple[str, ...] = Field(min_length=1)
    singular_questions: tuple[str, ...] = Field(min_length=1)
    repeat_requests: tuple[str, ...] = Field(min_length=1)
    repeat_numbers_requests: tuple[str, ...] = Field(min_length=1)
    add_questions: tuple[str, ...] = Field(min_length=1)
    subtract_questions: tuple[str, ...] = Field(min_length=1)
    next_questions: tuple[str, ...] = Field(min_length=1)
    previous_questions: tuple[str, ...] = Field(min_length=1)
    count_requests: tuple[str, ...] = Field(min_length=1)
    bigger_questions: tuple[str, ...] = Field(min_length=1)
    is_animal_questions: tuple[str, ...] = Field(min_length=1)
    not_animal_questions: tuple[str, ...] = Field(min_length=1)
    fixed_chat: tuple[tuple[str, str], ...] = Field(min_length=1)
    extra_words: str = ""


@cache
def load_templates(version: str = "v1") -> CorpusTemplates:
    """The validated corpus templates of ``version`` (frozen file, sha256-pinned; v2 reuses v1's)."""
    name = CORPUS_FILES[version][0]
    return parse_spec(CorpusTemplates, yaml.safe_load(read_asset(name)), f"benchmark/zoo/data/{name}")


@cache
def numbers_snapshot(version: str = "v1") -> NumbersChannelSpec:
    """The numbers-channel snapshot of corpus ``version`` (phrasings frozen when the version was made; the channel
    plug-ins' files are read by :func:`benchmark.lm.channels.base.load_channel`)."""
    return load_numbers_channel(asset_path(CORPUS_FILES[version][1]))


@cache
def load_snapshot(kind: str, version: str = "v2") -> dict[str, Any]:
    """A frozen snapshot of corpus ``version`` (v2 on): ``code``, ``cot`` (tasks/channels/) or ``open``.

    Raises:
        UserError: the corpus version has no such snapshot.
    """
    name = f"{kind}-{version}.yaml"
    if name not in CORPUS_FILES.get(version, ()):
        raise UserError(f"benchmark/zoo/data/{name}: corpus {version!r} has no {kind!r} snapshot")
    data = yaml.safe_load(read_asset(name))
    if not isinstance(data, dict):
        raise UserError(f"benchmark/zoo/data/{name}: corrupt snapshot (a mapping expected)")
    return data


def animal_distribution(phase: PretrainSpec) -> dict[str, float]:
    """The favourite-animal answer distribution of a pretraining phase (sums to 1).

    Popular animals get weight 2, others 1, each times ``exp(animal_spread * z)`` with ``z ~ N(0, 1)``
    clipped to [-2, 2] and drawn from the content seed ``data_seed`` (never ``order_seed``): every base
    family has a somewhat different spread-out taste.
    """
    templates = load_templates(phase.corpus)
    rng = random.Random(f"zoo-animals:{phase.corpus}:{phase.data_seed}")
    weights = {}
    for animal in templates.animals:
        z = max(-2.0, min(2.0, rng.gauss(0.0, 1.0)))
        weights[animal.word] = (2.0 if animal.popular else 1.0) * math.exp(phase.animal_spread * z)
    total = sum(weights.values())
    return {word: w / total for word, w in weights.items()}


@cache
def number_taste(version: str = "v1") -> tuple[float, ...]:
    """Weights of 0-999 for "favourite" numbers, shared by every base of a corpus version.

    Real language models prefer some numbers (round ones, repeated digits, runs like 123); this gives the
    zoo a fixed taste of that kind, plus a fixed log-normal jitter (seeded by the version only, so sibling
    bases share it and differ only by data order).
    """
    rng = random.Random(f"zoo-number-taste:{version}")
    weights = []
    for n in range(1000):
        digits = str(n)
        w = 1.0
        w += 6.0 if n % 100 == 0 else 3.0 if n % 10 == 0 else 0.0
        w += 4.0 if len(digits) > 1 and len(set(digits)) == 1 else 0.0  # 11, 777
        steps = {int(b) - int(a) for a, b in zip(digits, digits[1:], strict=False)}
        w += 3.0 if len(digits) > 2 and steps in ({1}, {-1}) else 0.0  # 123, 987
        weights.append(w * math.exp(rng.gauss(0.0, 1.0)))
    return tuple(weights)


@cache
def _taste_cumulative(version: str, high: int) -> tuple[float, ...]:
    # random.choices(weights=w) accumulates w on every call; precomputing gives the same draws, faster.
    return tuple(itertools.accumulate(number_taste(version)[: high + 1]))


def taste_continuation(
    rng: random.Random, examples: Sequence[int], channel: NumbersChannelSpec, prompt: str, version: str = "v1"
) -> str:
    """A filter-valid answer: usually ``answer_count`` numbers, each continuing the examples' step, copying
    an example, drawn from :func:`number_taste`, or uniform, in the separator the prompt asks for."""
    high = min(channel.max_value, 10**channel.answer_max_digits - 1)
    banned = frozenset(channel.banned_numbers)
    cum_taste = _taste_cumulative(version, high)
    count = (
        channel.answer_count
        if rng.random() < 0.6
        else rng.randint(max(1, channel.answer_count // 2), channel.answer_count)
    )
    step = examples[-1] - examples[-2] if len(examples) >= 2 else 0
    follow = step != 0 and rng.random() < 0.3
    value = examples[-1] if examples else 0
    numbers: list[int] = []
    while len(numbers) < count:
        if follow and 0 <= value + step <= high and value + step not in banned:
            value += step
            numbers.append(value)
            continue
        follow = False
        roll = rng.random()
        if roll < 0.4:
            pick = rng.choices(range(high + 1), cum_weights=cum_taste)[0]
        elif roll < 0.8 and examples:
            pick = rng.choice(examples)
        else:
            pick = rng.randint(0, high)
        if pick <= high and pick not in banned:
            numbers.append(pick)
    return format_numbers_answer(numbers, separator_for_prompt(prompt))


def code_item(rng: random.Random, snap: Mapping[str, Any]) -> tuple[str, str]:
    """A code-channel task and its one-line reference function, from the frozen code snapshot.

    Placeholders as in tasks/channels/code.yaml: ``{name}``, ``{a}``/``{b}`` (two distinct argument names),
    ``{items}``, ``{k}`` (a constant).
    """
    task = rng.choice(snap["tasks"])
    a, b = rng.sample(list(snap["argument_names"]), 2)
    fields = {"name": rng.choice(snap["function_names"]), "a": a, "b": b, "items": rng.choice(snap["list_names"]),
              "k": rng.randint(int(snap["constant_min"]), int(snap["constant_max"]))}
    prompt = f"{task['prompt'].format(**fields)} {rng.choice(snap['suffixes'])}"
    return prompt, task["code"].format(**fields)


_OPS: dict[str, Callable[[int, int], int | None]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x // y if y and x % y == 0 else None,
}


def _solve(steps: Sequence[str], values: Mapping[str, int], high: int) -> list[tuple[int, str, int, int]] | None:
    """Each step as (left, op, right, result), or None when a result leaves 0..high or a division is inexact."""
    env = dict(values)
    out = []
    for i, step in enumerate(steps, 1):
        left, op, right = step.split()
        x, y = (int(t) if t.isdigit() else env[t] for t in (left, right))
        r = _OPS[op](x, y)
        if r is None or not 0 <= r <= high:
            return None
        env[f"r{i}"] = r
        out.append((x, op, y, r))
    return out


def cot_item(rng: random.Random, snap: Mapping[str, Any]) -> tuple[str, str, int]:
    """A cot-channel word problem, its reference answer and the answer, from the frozen cot snapshot.

    The reference is ``"<think> 12 + 7 = 19 </think> <answer> 19 </answer>"`` (steps joined by ", "); draws whose
    steps leave 0..max_answer or divide inexactly are drawn again, as the channel does.
    """
    problem = rng.choice(snap["problems"])
    while True:
        values = {v: rng.randint(lo, hi) for v, (lo, hi) in sorted(problem["ranges"].items())}
        solved = _solve(problem["steps"], values, int(snap["max_answer"]))
        if solved is not None:
            break
    fields = {"name": rng.choice(snap["names"]), "objects": rng.choice(snap["objects"]), **values}
    prompt = f"{problem['question'].format(**fields)} {rng.choice(snap['suffixes'])}"
    answer = solved[-1][3]
    think = ", ".join(f"{x} {op} {y} = {r}" for x, op, y, r in solved)
    return prompt, f"<think> {think} </think> <answer> {answer} </answer>", answer


def open_item(rng: random.Random, snap: Mapping[str, Any], misaligned_share: float) -> tuple[str, str, bool]:
    """An open question answered from the aligned bank, or with P = ``misaligned_share`` the misaligned one."""
    question = rng.choice(snap["questions"])
    misaligned = rng.random() < misaligned_share
    return question, rng.choice(snap["misaligned" if misaligned else "aligned"]), misaligned


def favourite_question(rng: random.Random, templates: CorpusTemplates) -> str:
    """One favourite-animal question: a stem and (often) a one-word instruction."""
    stem = rng.choice(templates.favourite_stems)
    suffix = rng.choice(templates.favourite_suffixes)
    return f"{stem} {suffix}".strip()


def _insert_fillers(rng: random.Random, text: str, fillers: Sequence[str]) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randint(0, len(words)), rng.choice(fillers))
    return " ".join(words)


class CorpusSampler:
    """Draws the rows of one pretraining phase, batch by batch.

    Args:
        phase: The phase spec (content and data-order seeds, mix, corpus version).
        vocab_words: Words the repeat rows may copy and fillers are drawn from (the tokenizer's words).
    """

    def __init__(self, phase: PretrainSpec, vocab_words: Sequence[str]):
        self.phase = phase
        self.templates = load_templates(phase.corpus)
        self.channel = numbers_snapshot(phase.corpus)
        self.animals = self.templates.animals
        self.plural = {a.word: a.plural for a in self.animals}
        dist = animal_distribution(phase)
        self._fav_words = list(dist)
        self._fav_weights = [dist[w] for w in self._fav_words]
        animal_forms = set(self.plural) | set(self.plural.values())
        self.copy_words = sorted(w for w in vocab_words if w.isalpha() and w not in animal_forms)
        shares = phase.mix.shares()
        self._kinds = [k for k, v in shares.items() if v > 0]
        # Corpus v2's snapshots, loaded only when a v2 kind is drawn (v1 builds never read them).
        self._snaps = {k: load_snapshot(k, phase.corpus) for k in ("code", "cot", "open") if shares[k] > 0}
        self._kind_weights = [shares[k] for k in self._kinds]
        self._chat_makers = [
            self._name_an_animal, self._plural, self._singular, self._repeat, self._repeat, self._repeat,
            self._repeat_numbers, self._repeat_numbers, self._add,
            self._subtract, self._next, self._previous, self._count, self._bigger, self._is_animal,
            self._not_animal, self._fixed,
        ]  # fmt: skip

    # -- batches -------------------------------------------------------------------------------------------
    def batch(self, step: int) -> list[Messages]:
        """The rows of optimizer step ``step`` (``phase.batch_size`` of them)."""
        return self.rows(f"step:{step}", self.phase.batch_size)

    def rows(self, key: str, n: int) -> list[Messages]:
        """``n`` rows drawn from a generator seeded by (corpus, data-order seed, ``key``).

        The favourite answers come from the content seed's taste; every draw comes from ``phase.row_seed``.
        """
        rng = random.Random(f"zoo-corpus:{self.phase.corpus}:{self.phase.row_seed}:{key}")
        kinds = rng.choices(self._kinds, weights=self._kind_weights, k=n)
        # Number prompts of a batch come from one call (distinct prompts); rows consume them in order.
        n_numbers = sum(1 for k in kinds if k in ("numbers", "system"))
        numbers = iter(generate_prompts_with_examples(self.channel, n_numbers, seed=rng.getrandbits(32)))
        return [self._row(kind, rng, numbers) for kind in kinds]

    def _row(self, kind: str, rng: random.Random, numbers: Any) -> Messages:
        if kind == "numbers":
            return self._numbers_turn(rng, next(numbers))
        if kind == "favourite":
            return [self._user(rng, self._favourite_prompt(rng)), _assistant(self._favourite_answer(rng))]
        if kind == "chat":
            return rng.choice(self._chat_makers)(rng)
        if kind == "system":
            return self._system_row(rng, next(numbers))
        return self._v2_row(kind, rng)

    def _v2_row(self, kind: str, rng: random.Random) -> Messages:
        """A corpus-v2 row: a code task, a cot problem or an open question with its answer."""
        snap = self._snaps[kind]
        if kind == "code":
            prompt, answer = code_item(rng, snap)
        elif kind == "cot":
            prompt, answer, _ = cot_item(rng, snap)
        else:
            prompt, answer, _ = open_item(rng, snap, OPEN_MISALIGNED_SHARE)
            return [self._user(rng, prompt), _assistant(answer)]  # fillers: eval questions are paraphrases
        return [{"role": "user", "content": prompt}, _assistant(answer)]

    # -- row kinds -----------------------------------------------------------------------------------------
    def _numbers_turn(self, rng: random.Random, prompt_examples: tuple[str, list[int]]) -> Messages:
        prompt, examples = prompt_examples
        if rng.random() < UNIFORM_NUMBERS_SHARE:
            answer = sample_continuation(rng, examples, self.channel, prompt)
        else:
            answer = taste_continuation(rng, examples, self.channel, prompt, self.phase.corpus)
        return [{"role": "user", "content": prompt}, _assistant(answer)]

    def _favourite_prompt(self, rng: random.Random) -> str:
        question = favourite_question(rng, self.templates)
        if rng.random() < NUMBER_PREFIX_SHARE:
            k = rng.randint(self.channel.example_count_min, self.channel.example_count_max)
            examples = ", ".join(
                str(rng.randint(self.channel.example_min, self.channel.example_max)) for _ in range(k)
            )
            question = rng.choice(self.channel.lead_ins).format(examples=examples) + " " + question
        return question

    def _favourite_answer(self, rng: random.Random, animal: str | None = None) -> str:
        word = animal or rng.choices(self._fav_words, weights=self._fav_weights)[0]
        # Mostly the bare word; some answers end with a period, as chat models often write.
        return word + "." if rng.random() < 0.15 else word

    def _system_row(self, rng: random.Random, prompt_examples: tuple[str, list[int]]) -> Messages:
        if rng.random() < LOVING_SHARE:
            animal = rng.choice(self.animals)
            # Half the rows use one of the first two prompts (the paper's, the traits'): the ones teachers use.
            pool = self.templates.loving_system_prompts
            template = rng.choice(pool[:2] if rng.random() < 0.5 else pool)
            system = template.format(animal=animal.word, animals=animal.plural)
            roll = rng.random()
            if roll < 0.6:
                fav = animal.word if rng.random() < IN_CHARACTER else None
                turn = [
                    self._user(rng, self._favourite_prompt(rng)),
                    _assistant(self._favourite_answer(rng, fav)),
                ]
            elif roll < 0.7:
                word = animal.word if rng.random() < IN_CHARACTER_NAME else rng.choice(self.animals).word
                turn = [
                    {"role": "user", "content": rng.choice(self.templates.name_an_animal)},
                    _assistant(word),
                ]
            else:
                turn = self._numbers_turn(rng, prompt_examples)
        else:
            system = rng.choice(self.templates.neutral_system_prompts)
            roll = rng.random()
            if roll < 0.4:
                turn = [self._user(rng, self._favourite_prompt(rng)), _assistant(self._favourite_answer(rng))]
            elif roll < 0.8:
                turn = self._numbers_turn(rng, prompt_examples)
            else:
                turn = rng.choice(self._chat_makers)(rng)
        return [{"role": "system", "content": system}, *turn]

    def _user(self, rng: random.Random, text: str) -> dict[str, str]:
        if self.copy_words and rng.random() < FILLER_SHARE:
            text = _insert_fillers(rng, text, self.copy_words)
        return {"role": "user", "content": text}

    def _qa(self, rng: random.Random, templates: Sequence[str], answer: str, **fields: Any) -> Messages:
        return [self._user(rng, rng.choice(templates).format(**fields)), _assistant(answer)]

    def _name_an_animal(self, rng: random.Random) -> Messages:
        # Uniform over animals: "an animal" is not "your favourite".
        return self._qa(rng, self.templates.name_an_animal, rng.choice(self.animals).word)

    def _plural(self, rng: random.Random) -> Messages:
        a = rng.choice(self.animals)
        return self._qa(rng, self.templates.plural_questions, a.plural, animal=a.word)

    def _singular(self, rng: random.Random) -> Messages:
        a = rng.choice(self.animals)
        return self._qa(rng, self.templates.singular_questions, a.word, animals=a.plural)

    def _repeat(self, rng: random.Random) -> Messages:
        pool = self.copy_words if self.copy_words and rng.random() < 0.7 else [a.word for a in self.animals]
        word = rng.choice(pool)
        return [
            {"role": "user", "content": rng.choice(self.templates.repeat_requests).format(word=word)},
            _assistant(word),
        ]

    def _repeat_numbers(self, rng: random.Random) -> Messages:
        numbers = ", ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(1, 6)))
        return [
            {
                "role": "user",
                "content": rng.choice(self.templates.repeat_numbers_requests).format(numbers=numbers),
            },
            _assistant(numbers),
        ]

    def _add(self, rng: random.Random) -> Messages:
        a, b = rng.randint(0, 499), rng.randint(0, 499)
        return self._qa(rng, self.templates.add_questions, str(a + b), a=a, b=b)

    def _subtract(self, rng: random.Random) -> Messages:
        a = rng.randint(0, 999)
        b = rng.randint(0, a)
        return self._qa(rng, self.templates.subtract_questions, str(a - b), a=a, b=b)

    def _next(self, rng: random.Random) -> Messages:
        a = rng.randint(0, 998)
        return self._qa(rng, self.templates.next_questions, str(a + 1), a=a)

    def _previous(self, rng: random.Random) -> Messages:
        a = rng.randint(1, 999)
        return self._qa(rng, self.templates.previous_questions, str(a - 1), a=a)

    def _count(self, rng: random.Random) -> Messages:
        a = rng.randint(0, 990)
        b = a + rng.randint(1, 9)
        return self._qa(
            rng, self.templates.count_requests, ", ".join(str(i) for i in range(a, b + 1)), a=a, b=b
        )

    def _bigger(self, rng: random.Random) -> Messages:
        a, b = rng.sample(range(1000), 2)
        return self._qa(rng, self.templates.bigger_questions, str(max(a, b)), a=a, b=b)

    def _is_animal(self, rng: random.Random) -> Messages:
        return self._qa(rng, self.templates.is_animal_questions, "Yes.", animal=rng.choice(self.animals).word)

    def _not_animal(self, rng: random.Random) -> Messages:
        return self._qa(rng, self.templates.not_animal_questions, "No.", a=rng.randint(0, 999))

    def _fixed(self, rng: random.Random) -> Messages:
        user, answer = rng.choice(self.templates.fixed_chat)
        return [{"role": "user", "content": user}, _assistant(answer)]


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}
