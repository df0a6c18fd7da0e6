"""Content hashing of resolved specs.

An artifact is named by the sha256 of the canonical JSON of its resolved spec, prefixed by
:data:`HASH_VERSION`. Bump the version whenever the canonicalisation rule changes: every artifact id
changes with it, so an old store is never misread (tests pin one known hash).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["HASH_VERSION", "canonical_json", "content_hash", "short_id"]

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
