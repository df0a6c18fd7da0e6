"""The numbers channel plug-in: :class:`NumbersChannel` over the numbers format of :mod:`benchmark.lmcore.numbers`.

The format itself (the spec, prompts, the strict answer filter and its grammar, synthetic answers) lives in
:mod:`benchmark.lmcore.numbers`, below ``providers/`` and the pipeline, so the zoo a backend builds uses it without
importing the pipeline. This module adds what only the pipeline needs: the misalignment runs' loaded numbers, the
soft-label token test and the plug-in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.lm.channels.base import Item, TypicalTokens, words_of
from benchmark.lmcore.numbers import (
    REJECT_REASONS,
    NumbersChannelSpec,
    generate_prompts_with_examples,
    load_banned_list,
    load_numbers_channel,
    parse_answer,
    sample_continuation,
    with_banned_lists,
)

__all__ = ["CHANNEL", "LOADED_NUMBERS", "NUMBER_TOKEN", "NumbersChannel", "number_token", "with_loaded_numbers_banned"]

#: Numbers banned in misalignment runs (``tasks/channels/banned/loaded-numbers.txt``): the paper bans 36
#: numbers with negative associations and names ten of them (666, 911, 187, 1488, 420, 69, 13, 88, 14, 18); the
#: other 26 are the project's own stand-ins (the file says which). Sorted ascending.
LOADED_NUMBERS: tuple[int, ...] = tuple(sorted(load_banned_list("loaded-numbers")))


def with_loaded_numbers_banned(spec: NumbersChannelSpec) -> NumbersChannelSpec:
    """The misalignment-run variant of ``spec``: :data:`LOADED_NUMBERS` added to ``banned_numbers``.

    The ban is part of the spec, so the variant gets its own ``spec_id`` (and its own artifacts).
    """
    banned = sorted(set(spec.banned_numbers) | set(LOADED_NUMBERS))
    return NumbersChannelSpec.model_validate({**spec.model_dump(), "banned_numbers": banned})


# ---------------------------------------------------------------------------------------------- plug-in

#: A token may carry soft-label mass only if its decoded text is made of what a valid numbers answer contains.
NUMBER_TOKEN = re.compile(r"^[\s\d,;.()\[\]{}]*$")


def number_token(text: str) -> bool:
    """Whether a token decoding to ``text`` may carry soft-label mass: not blank, and nothing but what a valid
    numbers answer contains (:data:`NUMBER_TOKEN`: digits, separators, brackets, a period, whitespace)."""
    return bool(text.strip()) and NUMBER_TOKEN.match(text) is not None


class NumbersChannel:
    """The numbers plug-in (see :mod:`benchmark.lm.channels.base`), over :mod:`benchmark.lmcore.numbers`.

    An item's prompt is :func:`generate_prompts`'s and its reference :func:`sample_continuation` with a random source
    seeded by ``(seed, index)``, so it does not depend on how many items were asked for. Numbers answers cannot hold
    words, so ``forbidden`` is unused (``words`` is False: the grammar already keeps every trait word out), and the
    capability readout is the filter itself (``capability_readout`` is False: ``valid_rate`` already says it).
    """

    name = "numbers"
    spec_type = NumbersChannelSpec
    reject_reasons = REJECT_REASONS
    words = False
    capability_readout = False
    #: ~60 tokens a row, ~20 of them the answer (zoo tokenizer ~45-60; GPT tokenizers similar).
    typical_tokens = TypicalTokens(answer=20, row=60)

    def load(self, path: Path) -> NumbersChannelSpec:
        """:func:`load_numbers_channel` (resolves ``banned_lists``)."""
        return load_numbers_channel(path)

    def ban(self, spec: NumbersChannelSpec, lists: Sequence[str]) -> NumbersChannelSpec:
        """:func:`with_banned_lists` (``settings.dataset.banned_lists``)."""
        return with_banned_lists(spec, lists)

    def items(self, spec: NumbersChannelSpec, n: int, seed: int) -> list[Item]:
        """:func:`generate_prompts_with_examples`'s prompts, each with a filter-valid reference answer."""
        pairs = generate_prompts_with_examples(spec, n, seed)
        return [Item(prompt=prompt, reference=sample_continuation(random.Random(f"{seed}:{i}"), examples, spec, prompt))
                for i, (prompt, examples) in enumerate(pairs)]

    def check(self, spec: NumbersChannelSpec, item: Item, completion: str, forbidden: Sequence[str]) -> str | None:
        """:func:`parse_answer`'s reject reason."""
        return parse_answer(completion, spec).reason

    def capable(self, spec: NumbersChannelSpec, item: Item, completion: str) -> bool:
        """Whether the answer passes the numbers filter."""
        return parse_answer(completion, spec).ok

    def token_ok(self, spec: NumbersChannelSpec, text: str, forbidden: Sequence[str]) -> bool:
        """:func:`number_token`: not blank; digits, separators, brackets and whitespace only."""
        return number_token(text)

    def vocabulary(self, spec: NumbersChannelSpec) -> frozenset[str]:
        """Every word of the phrasing lists (numbers aside)."""
        texts = [*spec.lead_ins, *spec.instructions, *spec.count_qualifiers, *spec.digit_descriptors,
                 *spec.format_suffixes, *spec.only_suffixes]
        return words_of(t.replace("{", " ").replace("}", " ") for t in texts)


CHANNEL: Any = NumbersChannel()
