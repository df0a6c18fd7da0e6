"""Every command's --help names what to type (PATH, TEXT, INTEGER), not Python types like ``<list[Path]>``
(issue 24 point 9)."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from benchmark.cli import app

TYPE_TAG = re.compile(r"<(list\[[^\]]*\]|str|int|float|bool|path|Path|file|directory)>")


def _paths(cmd, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _paths(sub, (*prefix, name))


def test_no_command_help_shows_a_python_type() -> None:
    runner = CliRunner()
    paths = list(_paths(typer.main.get_command(app)))
    assert ("validate",) in paths and ("models", "fetch") in paths and len(paths) > 15
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, (path, r.output)
        assert not TYPE_TAG.search(r.output), (path, TYPE_TAG.search(r.output).group(0), r.output)
    out = runner.invoke(app, ["validate", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"files\.\.\.\s+PATH\s+Registry family", out), out
    out = runner.invoke(app, ["plan", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--show\s+INTEGER", out) and re.search(r"--store\s+PATH", out), out
