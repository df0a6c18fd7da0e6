"""The Track interface: what a track (LM, classifier) supplies to the shared engine.

A track owns its settings model (the ``settings:`` block of its suites), expands a suite into DAG nodes,
estimates the cost of the nodes still to run, and says what its design's tests can reach. Its stages live in ``<track>/stages/`` (one module per stage);
its report stage turns finished nodes into the shared tidy table, and everything after that table (analysis,
report, publishing) is shared. Adding a track means writing one module with a ``TRACK`` object and listing it
in :data:`TRACKS` (defined in :mod:`benchmark.specs`, where it validates a suite's ``track:``; re-exported here).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from benchmark.specs import MAX_SEEDS, TRACKS, SuiteSpec
from benchmark.specs_base import Frozen, parse_spec

if TYPE_CHECKING:
    from benchmark.dag import Node
    from benchmark.registry import Registry

__all__ = ["Track", "TrackDef", "TRACKS", "settings_cls", "track_for"]


class Track(Protocol):
    """One experiment family: settings, plan, estimate (see :data:`benchmark.lm.plan.TRACK`)."""

    #: The suite YAML's ``track:`` value.
    name: str
    #: Validates a suite's ``settings:`` block (unknown keys are errors).
    settings: type[Frozen]

    def build_plan(self, suite: SuiteSpec, settings: Any, reg: Registry) -> list[Node]:
        """Expand a validated suite into DAG nodes (bases → teachers → datasets → students → evals → report)."""
        ...

    def estimate(self, suite: SuiteSpec, settings: Any, reg: Registry, todo: list[Node]) -> list[str]:
        """Lines for ``slbench plan``: rough cost of the unfinished nodes (GPU-hours, API tokens, CPU time)."""
        ...

    def verdicts(self, suite: SuiteSpec, settings: Any, reg: Registry) -> list[str]:
        """Lines for ``slbench plan`` and ``validate``: what the design's tests can reach before any data
        (:mod:`benchmark.analysis.design`); lines starting with ``warning:`` say what stops a verdict or a
        submission."""
        ...


@dataclass(frozen=True)
class TrackDef:
    """A track assembled from its settings model and its plan and estimate functions (satisfies :class:`Track`)."""

    name: str
    settings: type[Frozen]
    plan_fn: Callable[[SuiteSpec, Any, Registry], list[Node]]
    estimate_fn: Callable[[SuiteSpec, Any, Registry, list[Node]], list[str]]
    verdicts_fn: Callable[[SuiteSpec, Any, Registry], list[str]]

    def build_plan(self, suite: SuiteSpec, settings: Any, reg: Registry) -> list[Node]:
        """The track's ``build_plan``."""
        return self.plan_fn(suite, settings, reg)

    def estimate(self, suite: SuiteSpec, settings: Any, reg: Registry, todo: list[Node]) -> list[str]:
        """The track's ``estimate``."""
        return self.estimate_fn(suite, settings, reg, todo)

    def verdicts(self, suite: SuiteSpec, settings: Any, reg: Registry) -> list[str]:
        """The track's ``verdicts``."""
        return self.verdicts_fn(suite, settings, reg)


def track_for(name: str) -> Track:
    """The track named by a suite's ``track:`` key (validated by :class:`~benchmark.specs.SuiteSpec`)."""
    from benchmark.errors import unknown_name

    if name not in TRACKS:
        raise unknown_name("track", name, TRACKS)
    track: Track = importlib.import_module(TRACKS[name]).TRACK
    return track


def settings_cls(track: str, settings: dict[str, Any], where: str) -> Frozen:
    """Validate a suite's settings with its track's class and return the typed settings (errors name ``where``)."""
    return parse_spec(track_for(track).settings, settings, where)


def suite_json_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file with its ``settings`` typed: each track's settings model under ``$defs``, and
    ``settings`` checked against the one its ``track`` names (``if``/``then``); ``slbench schema suite`` prints it."""
    from pydantic.json_schema import models_json_schema

    settings = {name: track_for(name).settings for name in TRACKS}
    refs, doc = models_json_schema([(SuiteSpec, "validation"), *((cls, "validation") for cls in settings.values())],
                                   ref_template="#/$defs/{model}")
    suite = dict(doc["$defs"][SuiteSpec.__name__])
    by_track = {name: refs[(cls, "validation")]["$ref"] for name, cls in settings.items()}
    suite["properties"] = {**suite["properties"], "settings": {
        **{k: v for k, v in suite["properties"]["settings"].items() if k in ("title", "description")},
        "description": "The track's settings (tracks: " + ", ".join(f"{n} -> {r.rsplit('/', 1)[-1]}"
                                                                   for n, r in by_track.items()) + ")",
        "anyOf": [{"$ref": r} for r in by_track.values()]}}
    suite["allOf"] = [{"if": {"properties": {"track": {"const": n}}, "required": ["track"]},
                       "then": {"properties": {"settings": {"$ref": r}}}} for n, r in by_track.items()]
    suite["properties"]["track"] = {**suite["properties"]["track"], "enum": list(TRACKS)}
    seeds = suite["properties"]["seeds"]  # "seeds: 3" is shorthand for [0, 1, 2] (SuiteSpec._seed_count)
    suite["properties"]["seeds"] = {"anyOf": [{k: v for k, v in seeds.items() if k != "title"},
                                              {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS}],
                                    "title": seeds.get("title", "Seeds")}
    defs = {k: v for k, v in doc["$defs"].items() if k != SuiteSpec.__name__}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **suite, "$defs": defs}
