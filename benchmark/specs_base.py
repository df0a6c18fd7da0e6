"""The frozen, strict pydantic base every spec derives from, plus YAML loading with one-line errors."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.errors import UserError, did_you_mean, unknown_name
from benchmark.hashing import content_hash, short_id

__all__ = ["Frozen", "load_yaml", "parse_spec", "format_validation_error", "registered", "resolve_object"]


def resolve_object(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def registered(table: Mapping[str, str], what: str, name: str, where: str = "") -> Any:
    """The object a plug-in table (name -> ``"module:attr"``) registers as ``name``, imported on first use.

    Raises:
        UserError: ``name`` is not in ``table`` (names ``what`` and lists the known ones).
    """
    target = table.get(name)
    if target is None:
        raise unknown_name(what, name, sorted(table), where)
    return resolve_object(target)

T = TypeVar("T", bound="Frozen")


class Frozen(BaseModel):
    """Immutable spec: unknown keys are errors; ``spec_id`` hashes every field not in ``_unhashed``."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    #: Field names that are recorded but not hashed (throughput knobs such as batch size for inference).
    _unhashed: ClassVar[frozenset[str]] = frozenset()

    def hashed_dict(self) -> dict[str, Any]:
        """The JSON-able dict that defines this spec's identity."""
        data = self.model_dump(mode="json")
        for key in self._unhashed:
            data.pop(key, None)
        return {"__spec__": type(self).__name__, **data}

    @property
    def spec_hash(self) -> str:
        """Full content hash of the spec."""
        return content_hash(self.hashed_dict())

    @property
    def spec_id(self) -> str:
        """12-hex-digit content id used in artifact names."""
        return short_id(self.hashed_dict())


def format_validation_error(err: ValidationError, model: type[BaseModel], where: str) -> str:
    """Turn a pydantic error into one line per problem (the first per key path), each naming the file, the key path
    and what is allowed."""
    lines: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for e in err.errors():
        if e["loc"] not in seen:
            seen.add(e["loc"])
            lines.append(_problem_line(e, model, where))
    return "\n".join(lines)


def _problem_line(first: Any, model: type[BaseModel], where: str) -> str:
    """One pydantic error as one line."""
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    kind = first["type"]
    if kind == "extra_forbidden":
        # Find the allowed keys at that level to suggest a fix.
        allowed = _allowed_keys(model, first["loc"][:-1])
        key = str(first["loc"][-1])
        hint = did_you_mean(key, allowed) if allowed else ""
        allowed_s = f"; allowed keys: {', '.join(sorted(allowed))}" if allowed else ""
        return f"{where}: unknown key {loc!r}{hint}{allowed_s}"
    if kind == "missing":
        given = first.get("input")
        near = [k for k in given if isinstance(k, str) and k != first["loc"][-1]] if isinstance(given, dict) else []
        key = str(first["loc"][-1])
        close = difflib.get_close_matches(key, near, n=1, cutoff=0.6)
        hint = f" (you wrote {close[0]!r}: did you mean {key!r}?)" if close else ""  # e.g. 'seed' for 'seeds'
        return f"{where}: missing required key {loc!r}{hint}"
    got = repr(first.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."  # never echo unbounded input
    return f"{where}: bad value for {loc!r}: {first['msg']} (got {got})"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = _first_model(ann)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _first_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def load_yaml(path: Path) -> Any:
    """Read a YAML file, turning I/O and syntax problems into one-line :class:`UserError`s.

    Files larger than :data:`MAX_YAML_BYTES` are refused before parsing (PyYAML parses ~0.25 MB/s).
    """
    try:
        size = Path(path).stat().st_size
    except OSError:
        size = 0  # reading it below names the problem
    if size > MAX_YAML_BYTES:
        raise UserError(f"{path}: {size:,} bytes, larger than the {MAX_YAML_BYTES:,}-byte limit of a registry, suite, "
                        "trait or task file (the largest here is ~6 KB); is it the right file?")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a YAML file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}:{where} {problem}") from None
    _check_expanded_size(data, path)
    return data


#: Most values a user YAML file may hold, its aliases followed (the largest file here has ~300).
MAX_YAML_VALUES = 100_000
#: Largest YAML file read (bytes): 40x the largest registry or task file here, parsed in well under a second.
MAX_YAML_BYTES = 256 * 1024


def _check_expanded_size(data: Any, path: Path) -> None:
    """Refuse YAML that holds more than :data:`MAX_YAML_VALUES` values once its aliases are followed.

    PyYAML shares aliased objects, so loading an "alias bomb" is cheap; validating, hashing or printing the data
    would walk every expanded copy. The walk stops as soon as the budget is spent; the message blames aliases only
    when the walk met a shared (aliased) mapping or list.
    """
    stack, seen = [data], 0
    containers: set[int] = set()
    aliased = False
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            how = ("once its YAML aliases are followed; write the data out instead of nesting aliases" if aliased else
                   "; a registry, suite or trait file holds a few hundred")
            raise UserError(f"{path}: holds more than {MAX_YAML_VALUES:,} values {how}".replace(" ;", ";"))
        if isinstance(item, (dict, list)):
            aliased |= id(item) in containers
            containers.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)


def parse_spec(model: type[T], data: Any, where: str) -> T:
    """Validate ``data`` as ``model``; errors become one line naming ``where`` and the key."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, model, where)) from None
