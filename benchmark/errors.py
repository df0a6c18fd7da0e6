"""User-facing errors.

Anything a user can fix (a bad YAML key, an unknown model name, a corrupt cache file) raises
:class:`UserError`. The CLI prints its message on one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UserError", "did_you_mean", "unknown_name"]


class UserError(Exception):
    """An error caused by the user's input, reported as a single line with exit code 2."""

    exit_code = 2


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(what: str, name: str, choices: Iterable[str], where: str = "") -> UserError:
    """Build the standard 'unknown X' error with a did-you-mean hint and the allowed values."""
    choices = sorted(choices)
    loc = f"{where}: " if where else ""
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return UserError(f"{loc}unknown {what} {name!r}{did_you_mean(name, choices)}; allowed: {shown}")
