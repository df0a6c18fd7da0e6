"""Model providers: thin clients for remote model APIs (each imports its SDK lazily)."""

from __future__ import annotations

__all__: list[str] = []
