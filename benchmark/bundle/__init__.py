"""Results bundles: one schema-versioned JSON per published suite, its export, validation and comparison.

Modules: :mod:`~benchmark.bundle.schema` (the pydantic model; ``schemas/bundle.schema.json`` is generated from
it), :mod:`~benchmark.bundle.sweep` (a sweep summary's schema, ``schemas/sweep.schema.json``, and its validation),
:mod:`~benchmark.bundle.tables` (published files <-> lossless tables), :mod:`~benchmark.bundle.tracks`
(each track's recomputation and design checks), :mod:`~benchmark.bundle.export` (a report directory -> a bundle),
:mod:`~benchmark.bundle.validate` (a bundle -> one line per problem), :mod:`~benchmark.bundle.compare` (cells
that moved beyond their CIs between two bundles) and :mod:`~benchmark.bundle.planning` (a plan by matrix cell).

Torch-free. The names below are imported on first use, so ``slbench plan`` (which needs only the planning module)
does not pay for pandas and the analysis.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BUNDLE", "BUNDLE_SCHEMA_VERSION", "Bundle", "bundle_bytes", "export_bundle", "load_bundle",
           "validate_bundle", "validate_bundle_file"]

_WHERE = {"BUNDLE": "export", "bundle_bytes": "export", "export_bundle": "export", "BUNDLE_SCHEMA_VERSION": "schema",
          "Bundle": "schema", "load_bundle": "validate", "validate_bundle": "validate",
          "validate_bundle_file": "validate"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'benchmark.bundle' has no attribute {name!r}")
    return getattr(importlib.import_module(f"benchmark.bundle.{_WHERE[name]}"), name)
