"""Executors: the same DAG run locally (``local``) or on a Ray cluster (``ray``), one ``run_plan`` signature.

``run_plan(nodes, store, *, workers, on_event, **options)`` in each module; :func:`executor_for` picks one by
name. Importing this package imports no Ray: the optional dependency is loaded when a Ray run starts, so a
missing install is a one-line error, not an ImportError here.
"""

from __future__ import annotations

import importlib
from typing import Any

from benchmark.errors import unknown_name
from benchmark.executors.base import Event, RunSummary, plan_status

__all__ = ["EXECUTORS", "Event", "RunSummary", "executor_for", "plan_status"]

#: executor name -> module holding its ``run_plan``.
EXECUTORS = {"local": "benchmark.executors.local", "ray": "benchmark.executors.ray"}


def executor_for(name: str) -> Any:
    """The ``run_plan`` function of executor ``name``.

    Raises:
        UserError: unknown executor name (with the allowed names).
    """
    if name not in EXECUTORS:
        raise unknown_name("executor", name, EXECUTORS, "--executor")
    return importlib.import_module(EXECUTORS[name]).run_plan
