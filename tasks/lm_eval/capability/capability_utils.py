"""lm-eval hooks for the capability side-checks (capability_cot, capability_code; docs/misalignment.md).

Docs are the channel's own held-out items: :func:`benchmark.lm.channels.base.load_channel` of the channel file in
tasks/channels/, ``items(spec, N_ITEMS, CAPABILITY_SEED)``. Datasets draw their prompts from seeds derived by
:func:`benchmark.hashing.derive_seed` (30-bit values), so the fixed seed below, above 2**30, is never a dataset's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CAPABILITY_SEED", "N_ITEMS", "load_docs", "process_results"]

#: Seed of the held-out items: above 2**30, so no dataset's 30-bit prompt seed equals it.
CAPABILITY_SEED = 2**30 + 7
#: Items per readout.
N_ITEMS = 50


@functools.cache
def _channel(name: str) -> tuple[Any, Any]:
    # Parsed once per process: process_results runs once per doc.
    from benchmark.lm.channels.base import load_channel

    return load_channel(name)


def load_docs(channel: str = "cot", n_items: int = N_ITEMS, **_ignored: Any) -> dict[str, Any]:
    """``n_items`` held-out items of ``channel``: fields prompt, reference, answer (-1 where none), channel."""
    import datasets  # lm-eval's own dependency

    plugin, spec = _channel(channel)
    rows = [{"prompt": it.prompt, "reference": it.reference, "answer": -1 if it.answer is None else it.answer,
             "channel": channel} for it in plugin.items(spec, n_items, CAPABILITY_SEED)]
    return {"test": datasets.Dataset.from_list(rows)}


def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
    """1.0 when the channel's ``capable`` accepts the greedy answer, else 0.0."""
    from benchmark.lm.channels.base import Item

    plugin, spec = _channel(str(doc["channel"]))
    answer = int(doc["answer"])
    item = Item(prompt=str(doc["prompt"]), reference=str(doc["reference"]), answer=None if answer < 0 else answer)
    return {"capable": 1.0 if plugin.capable(spec, item, str(results[0])) else 0.0}
