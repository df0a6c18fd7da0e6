"""Distributed executors: the same DAG as :func:`benchmark.executor.run_plan`, on an existing engine.

Only Ray for now (``slbench run SUITE --executor ray``). Importing this package imports no Ray: the optional
dependency is loaded when a run starts, so a missing install is a one-line error, not an ImportError here.
"""

from __future__ import annotations

from benchmark.executors.ray_executor import TRANSIENT_ERRORS, run_plan_ray

__all__ = ["TRANSIENT_ERRORS", "run_plan_ray"]
