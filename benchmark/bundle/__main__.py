"""``python -m benchmark.bundle [--write]``: print the bundle's JSON Schema, or write schemas/bundle.schema.json and
schemas/sweep.schema.json."""

from __future__ import annotations

import sys

from benchmark.bundle.schema import main

raise SystemExit(main(sys.argv))
