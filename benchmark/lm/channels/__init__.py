"""Prompt channels: the unrelated domains a teacher answers in (docs/research/paper.md, "Teacher answers prompts").

Each channel is pure Python (no torch): it makes prompts from a seed and filters the teacher's answers. The plug-in
interface (:class:`Item`, :class:`Channel`, :func:`load_channel`) and the helpers the plug-ins and the dataset stage
share (:func:`subsample`, :func:`token_clean`, ...) are in :mod:`benchmark.lm.channels.base`; the plug-ins are
``numbers``, ``code`` and ``cot`` (docs/channels.md). The numbers format the numbers plug-in runs on (its spec,
prompts and filter, re-exported here) is in :mod:`benchmark.lmcore.numbers`.
"""

from __future__ import annotations

from benchmark.lm.channels.base import CHANNELS, Channel, Item, load_channel, subsample
from benchmark.lm.channels.numbers import LOADED_NUMBERS, with_loaded_numbers_banned
from benchmark.lmcore.numbers import (
    BRACKET_PAIRS,
    REJECT_REASONS,
    SEPARATORS,
    NumbersChannelSpec,
    ParseResult,
    default_numbers_channel_path,
    filter_completions,
    format_numbers_answer,
    generate_prompts,
    generate_prompts_with_examples,
    load_numbers_channel,
    parse_answer,
    sample_continuation,
    separator_for_prompt,
)

__all__ = [
    "BRACKET_PAIRS",
    "CHANNELS",
    "Channel",
    "Item",
    "load_channel",
    "LOADED_NUMBERS",
    "REJECT_REASONS",
    "SEPARATORS",
    "NumbersChannelSpec",
    "ParseResult",
    "default_numbers_channel_path",
    "filter_completions",
    "format_numbers_answer",
    "generate_prompts",
    "generate_prompts_with_examples",
    "load_numbers_channel",
    "parse_answer",
    "sample_continuation",
    "separator_for_prompt",
    "subsample",
    "with_loaded_numbers_banned",
]
