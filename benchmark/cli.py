"""The ``slbench`` command line.

Light start: nothing here imports torch, transformers or lm-eval at module level; the stages that need
them import them inside the worker that runs them (``slbench --help``, ``plan``, ``models``, ``validate``
stay well under a second).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmark.errors import UserError
from benchmark.store import StageFailed

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

console = Console(stderr=False)
err_console = Console(stderr=True)

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


def _check_owner(reg: Any, suite: str, name: str, force: bool) -> None:
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
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, path = reg.suite(suite)
    nodes = track_for(spec.track).build_plan(spec, settings, reg)
    return reg, spec, settings, nodes


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
) -> None:
    """Show what `slbench run SUITE` would do: node counts (total / done / to do) per stage. Runs nothing."""
    from benchmark.executors import plan_status
    from benchmark.store import Store
    from benchmark.tracks import track_for

    reg, spec, settings, nodes = _load_plan(suite)
    st = Store(_store_root(store))
    status, todo = plan_status(nodes, st)
    replicates = getattr(settings, "replicates", None)  # the LM track's independent teachers per arm
    reps = f", {replicates} teacher replicates per arm" if replicates else ""
    console.print(f"suite {spec.name!r} ({spec.track} track): {len(spec.teachers)} teachers × "
                  f"{len(spec.students)} students, {len(spec.traits)} traits{reps}, {len(spec.seeds)} seeds")
    console.print(_status_table(status, "nodes"))
    for n in todo[:show]:
        console.print(f"  to do: {n.key}")
    if len(todo) > show:
        console.print(f"  ... and {len(todo) - show} more")
    for line in track_for(spec.track).estimate(spec, settings, reg, todo):
        console.print(line)


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
    reg, spec, settings, nodes = _load_plan(suite)
    if publish:
        _check_owner(reg, suite, spec.name, force)  # before any compute
    st = Store(_store_root(store))
    t0 = time.time()
    options = {"address": address} if address is not None else {}
    if executor == "local" and workers is None:
        workers = 2  # two 1-thread workers use a 2-core machine best (docs/research/prototypes.md)
    with _Progress(nodes) as prog:
        summary = run_plan(nodes, st, workers=workers, on_event=prog.event, **options)
    report = [n for n in nodes if n.kind == "report"]
    console.print(f"suite {spec.name!r}: built {len(summary.built)} node(s), {len(summary.skipped)} cached, "
                  f"{time.time() - t0:.1f}s")
    for kind, wall in sorted(summary.wall_by_kind.items()):
        console.print(f"  {kind:8s} {wall:8.1f}s")
    if publish and report:
        console.print(publish_report(st, report[0], spec.name))


@app.command()
def report(
    suite: SuiteArg = "default",
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option(help=(
        "Publish even over the results of another suite file of the same name."))] = False,
) -> None:
    """Re-publish a finished suite's report from the store into results/suites/SUITE/."""
    from benchmark.store import Store

    reg, spec, settings, nodes = _load_plan(suite)
    _check_owner(reg, suite, spec.name, force)
    st = Store(_store_root(store))
    rep = [n for n in nodes if n.kind == "report"]
    if not rep or not st.is_done(rep[0]):
        raise UserError(f"suite {spec.name!r} has no finished report in {st.root}; run `slbench run {suite}` first")
    console.print(publish_report(st, rep[0], spec.name))


def publish_report(store: Any, node: Any, suite: str) -> str:
    """Verify a finished report node and its inputs (sha256), then publish it into results/suites/<suite>/.

    Returns the line to print: where it was published, or that the published copy was already identical.
    """
    from benchmark.files import project_root
    from benchmark.publish import publish_dir

    for dep in node.deps:
        store.verify(store.root / dep, full=True)
    src = store.path(node)
    store.verify(src, full=True)
    dest = project_root() / "results" / "suites" / suite
    if publish_dir(src, dest):
        return f"published {dest}"
    return f"{dest} already holds these results (unchanged)"


@app.command()
def models(
    family: Annotated[str | None, typer.Option(help="Only this family.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json (csv/json: full names, for scripts).")]
    = "table",
) -> None:
    """List the registry's base models with their provider, source and init lineage."""
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
    cols = ("name", "family", "provider", "source", "lineage_init", "parent")
    rows = [(m.name, m.family, m.provider, m.source or "(built)", m.lineage.init, m.lineage.parent or "")
            for m in reg.models.values() if family is None or m.family == family]
    if fmt == "json":
        print(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows([cols, *rows])
    else:
        table = Table(title="model registry")
        for col in cols:
            table.add_column(col.replace("_", " "), overflow="fold")
        for r in rows:
            table.add_row(*r)
        console.print(table)


@app.command()
def schema(what: Annotated[str, typer.Argument(help="registry | suite | trait")]) -> None:
    """Print the JSON Schema of a registry family, suite or trait file (for editors that validate YAML)."""
    import json

    from pydantic import BaseModel

    from benchmark.errors import unknown_name
    from benchmark.specs import ModelSpec, RegistryFile, SuiteSpec, TraitSpec

    models: dict[str, type[BaseModel]] = {"registry": RegistryFile, "suite": SuiteSpec, "trait": TraitSpec}
    if what not in models:
        raise unknown_name("schema", what, models)
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
    console.print("[bold]channels:[/] " + ", ".join(p.stem for p in sorted((reg.tasks_dir / "channels").glob("*.yaml"))))
    lm = sorted(p.stem for p in (reg.tasks_dir / "lm_eval").rglob("*.yaml"))
    console.print("[bold]lm-eval tasks:[/] " + ", ".join(lm))


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Registry family, trait or suite YAML files.")]) -> None:
    """Check YAML files as a submission is checked (a new model family: one YAML in model_registry/)."""
    from benchmark.registry import validate_file

    for f in files:
        console.print(validate_file(f))


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


def main() -> None:
    """Entry point: user errors print one line and exit 2."""
    try:
        app(standalone_mode=False)
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except StageFailed as exc:
        # An internal failure of one stage: say which node and where its log is; the traceback is in the log.
        err_console.print(f"error: stage {exc.key} failed: {exc}" + (f" (log: {exc.log_path})" if exc.log_path else ""),
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted; rerun the same command to resume", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        usage, abort = _click_exception_types()
        if isinstance(exc, usage):
            # One line, like every other user error; the usage text is one `--help` away.
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "slbench"
            message = exc.format_message()  # type: ignore[attr-defined]  # a ClickException
            err_console.print(f"error: {message} (see `{command} --help`)", markup=False, highlight=False,
                              soft_wrap=True)
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
