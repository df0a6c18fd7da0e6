"""CONTRIBUTING.md holds the submission checklist (issue 24 point 9): it links docs/submitting.md, and every file
and `slbench` command it names exists, so the checklist cannot silently go stale."""

from __future__ import annotations

import re

import typer

from benchmark.cli import app
from tests.conftest import ROOT


def test_the_checklist_links_the_guide_and_names_only_real_things() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert "](docs/submitting.md)" in text
    assert text.count("- [ ]") >= 10  # a checklist
    for path in re.findall(r"(?<![\w/<])((?:docs|tasks|model_registry|results|benchmarks)/[\w./-]+\.(?:md|yaml))", text):
        assert (ROOT / path).exists(), path
    commands = set(typer.main.get_command(app).commands)
    used = set(re.findall(r"slbench (\w+)", text))
    assert used and used <= commands, used - commands
    for flag in re.findall(r"`slbench [^`]*?(--[\w-]+)", text):
        assert flag in {"--store"}, flag  # options it names
    assert "README" in text and (ROOT / "README.md").read_text(encoding="utf-8").count("CONTRIBUTING.md") >= 1
