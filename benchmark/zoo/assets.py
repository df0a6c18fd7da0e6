"""The zoo's frozen data files (``benchmark/zoo/data/``) and their pinned sha256 digests.

A zoo spec names versions (``tokenizer: words-v1``, ``corpus: v1``), not files; the files behind a version
never change. Pinning their digests turns an accidental edit into an actionable error instead of committed
weights that silently no longer match their spec id. Torch-free.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from benchmark.errors import UserError

__all__ = ["CORPUS_FILES", "DATA_DIR", "PINNED_SHA256", "asset_path", "read_asset", "sha256_text"]

DATA_DIR = Path(__file__).resolve().parent / "data"

#: file name in DATA_DIR -> sha256 of its bytes. A version's files are frozen: add a new version instead.
PINNED_SHA256: dict[str, str] = {
    "corpus-v1.yaml": "051dbed187699f27153519cbd75d4c225e6cfadf50a0e76bc471f0bf7c2fa450",
    "numbers-v1.yaml": "9202c615f953ac05f5a90a1cb946d320d3f85fcae1a8783324b27313b7eb5db4",
    "words-v1.txt": "9472405bc8843d647fc6ea6992e4a59d8d87a95cb9aa0d683fd3c709a229369d",
    "code-v2.yaml": "c444e9986efd4b3182c514a0da7ee11772e09555d172cbc5920bf136279e0dec",
    "cot-v2.yaml": "ec1394628d7935477b6aca4d66c0d3de3ffb95b97044d29f86311ffeab2492f4",
    "open-v2.yaml": "33e1dff4245d13fabd01330509ce252b66fd52278271d865580a19972ae21a06",
    "words-v2.txt": "c1e153965bc2ab17eb821c9f0a56b2081a52e87c7cc937d05c0bacccbfb8aee0",
}

#: corpus version -> its frozen files: v1's templates and numbers snapshot; v2 reuses them and adds snapshots of
#: the code and cot channels (tasks/channels/) and of the open questions and answer banks (tasks/teacher_data/).
CORPUS_FILES: dict[str, tuple[str, ...]] = {
    "v1": ("corpus-v1.yaml", "numbers-v1.yaml"),
    "v2": ("corpus-v1.yaml", "numbers-v1.yaml", "code-v2.yaml", "cot-v2.yaml", "open-v2.yaml"),
}


def sha256_text(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def asset_path(name: str) -> Path:
    """Path of a pinned data file, after checking it exists and matches its pin.

    Raises:
        UserError: the file is missing or was edited (its digest differs from the pin).
    """
    if name not in PINNED_SHA256:
        raise UserError(
            f"benchmark/zoo/data/{name}: not a pinned zoo data file; known: {', '.join(PINNED_SHA256)}"
        )
    path = DATA_DIR / name
    if not path.is_file():
        raise UserError(f"{path}: file not found (the zoo's data files ship with the package)")
    pin = PINNED_SHA256[name]
    digest = sha256_text(path.read_bytes())
    if pin and digest != pin:
        raise UserError(
            f"{path}: sha256 {digest[:12]} differs from the pinned {pin[:12]}: frozen zoo data was "
            "edited; restore it, or add a new version (new file, new spec value) and rebuild the zoo"
        )
    return path


def read_asset(name: str) -> str:
    """Text of a pinned data file (see :func:`asset_path`)."""
    return asset_path(name).read_text(encoding="utf-8")
