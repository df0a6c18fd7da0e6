"""The version of the statistics: it enters every report node's spec, so a changed analysis gets a new report id
(and every other node keeps its id). Bump it whenever a published number would change for the same inputs."""

from __future__ import annotations

__all__ = ["ANALYSIS_VERSION"]

#: 7: one target-specific contrast per pair (pairs.csv), drift-aware verdicts, teacher-block γ (issue 19).
#: 1-6 were the hidden ``report_version`` of the LM report node.
ANALYSIS_VERSION = 7
