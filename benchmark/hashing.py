"""Content hashing of resolved specs.

An artifact is named by the sha256 of the canonical JSON of its resolved spec, prefixed by
:data:`HASH_VERSION`. Bump the version whenever the canonicalisation rule changes: every artifact id
changes with it, so an old store is never misread (tests pin one known hash).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["HASH_VERSION", "canonical_json", "content_hash", "derive_seed", "shift_seed", "short_id"]

HASH_VERSION = "slb-hash-1"
SHORT_ID_LEN = 12


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, no whitespace, UTF-8, finite floats only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_hash(obj: Any) -> str:
    """Full sha256 hex digest of ``obj`` under the current hashing rule."""
    payload = HASH_VERSION + "\n" + canonical_json(obj)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def short_id(obj: Any) -> str:
    """The first 12 hex digits of :func:`content_hash`: the id used in artifact directory names."""
    return content_hash(obj)[:SHORT_ID_LEN]


def derive_seed(*parts: object) -> int:
    """A 63-bit generator seed from a tuple of labels and integers (stable across runs and platforms).

    Every random stream is named by such a tuple, e.g. ``("init", init_seed, replicate)``, so streams never
    collide and a replicate's stream does not depend on how many replicates run. Not versioned by
    :data:`HASH_VERSION`: changing it would change every seed, not only artifact ids.
    """
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def shift_seed(seed: int, suite_seed: int) -> int:
    """``seed`` moved to fresh randomness by a suite's ``seed`` (``SuiteSpec.seed``); unchanged for suite seed 0.

    Suite seed 0 keeps every existing seed (and so every artifact of a suite written before the field existed);
    any other value maps each seed to an unrelated 31-bit one, so a whole matrix can be rerun on new draws.
    """
    if suite_seed == 0:
        return seed
    return derive_seed("suite-seed", suite_seed, seed) >> 32
