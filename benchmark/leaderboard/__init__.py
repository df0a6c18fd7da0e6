"""The static leaderboard site: ``slbench leaderboard BUNDLES... --out DIR`` (plain files, no server).

:mod:`~benchmark.leaderboard.build` writes the pages, :mod:`~benchmark.leaderboard.svg` the figures, ``static/``
holds the stylesheet and the one script (sorting and filtering), and :mod:`~benchmark.leaderboard.browser` drives
headless Chromium for the site's browser test and screenshots.
"""

from __future__ import annotations

from benchmark.leaderboard.build import COLUMNS, MARKER, Site, build_site, check_site_dir, table_rows

__all__ = ["COLUMNS", "MARKER", "Site", "build_site", "check_site_dir", "table_rows"]
