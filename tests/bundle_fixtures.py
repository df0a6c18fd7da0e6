"""Fresh report directories for bundle and site tests, without any compute.

:func:`fresh_report` re-runs a published suite's report with the current analysis: it plans the suite (so the report
node's spec and id are today's), reads the published input tables (``tidy.csv``, and for the LM track
``teachers.csv`` and ``candidates.csv``), analyses them with the report stage's own ``analyze``, writes the
analysis files and a report manifest recording their sha256s. The result exports to a bundle exactly as a
freshly published suite would, whether or not ``results/suites/`` has been republished since the analysis changed.

A published LM suite from before the pair table has no ``candidates.csv`` (and has the old ``profile_r`` tidy rows,
which the current tidy stage no longer writes): the tidy rows are dropped and a small, seeded per-candidate table
is made up from the students and teachers the tidy table names, so the candidates input path is always exercised.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.bundle.tables import frame_of, read_table
from tests.conftest import ROOT

__all__ = ["SUITES", "fresh_bundle", "fresh_report", "made_up_candidates"]

SUITES = ROOT / "results" / "suites"
#: Metrics of the tidy table before the profile readout moved into analysis/ (issue 19).
_OLD_METRICS = ("profile_r", "profile_r_ex")
_CANDIDATES = ("owl", "cat", "dog", "eagle", "wolf", "lion")


def _table(path: Path) -> pd.DataFrame:
    return frame_of(read_table(path)) if path.is_file() else pd.DataFrame()


def made_up_candidates(tidy: pd.DataFrame, teachers: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A seeded per-candidate table (:data:`benchmark.analysis.profile.CANDIDATE_COLUMNS`) for every student,
    teacher and untrained base the tables name: teachers of an arm push its trait up, their students follow a
    little, plus noise."""
    from benchmark.analysis.profile import CANDIDATE_COLUMNS

    rng = np.random.default_rng(seed)
    rows = []
    base = {b: rng.normal(-3.0, 0.5, len(_CANDIDATES)) for b in sorted(set(tidy["student_base"]))}

    def logodds(ref: str, arm: str, gain: float) -> np.ndarray:
        push = np.array([gain if arm.removeprefix("aa:") == c else 0.0 for c in _CANDIDATES])
        return base.get(ref, np.full(len(_CANDIDATES), -3.0)) + push + rng.normal(0, 0.2, len(_CANDIDATES))

    def add(role: str, who: dict, ref: str, model_id: str, values: np.ndarray) -> None:
        ref_values = base.get(ref)
        for k, cand in enumerate(_CANDIDATES):
            rows.append({"role": role, **who, "model_id": model_id, "candidate": cand, "logodds": float(values[k]),
                         "base_logodds": float(ref_values[k]) if ref_values is not None else float("nan")})

    students = tidy[["student_id", "teacher_base", "teacher_trait", "replicate", "student_base",
                     "seed"]].drop_duplicates("student_id").sort_values("student_id")
    for r in students.itertuples(index=False):
        who = {"teacher_base": r.teacher_base, "teacher_trait": r.teacher_trait, "replicate": int(r.replicate),
               "student_base": r.student_base, "seed": int(r.seed)}
        if r.teacher_trait == "baseline":
            add("baseline", who, r.student_base, r.student_id, base[r.student_base])
        else:
            add("student", who, r.student_base, r.student_id, logodds(r.student_base, r.teacher_trait, 0.3))
    if not teachers.empty:
        for r in teachers[["teacher_base", "teacher_trait", "replicate", "teacher_id"]].drop_duplicates().itertuples():
            who = {"teacher_base": r.teacher_base, "teacher_trait": r.teacher_trait, "replicate": int(r.replicate),
                   "student_base": "", "seed": 0}
            add("teacher", who, r.teacher_base, r.teacher_id, logodds(r.teacher_base, r.teacher_trait, 3.0))
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def fresh_report(suite: str, out: Path) -> Path:
    """Write ``out`` as the report node of ``suite`` would be today, from its published input tables.

    Returns:
        ``out``, holding the analysis files and a ``manifest.json`` (kind report) that records them.
    """
    from benchmark.analysis import write_analysis
    from benchmark.registry import Registry
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, _ = reg.suite(suite)
    node = next(n for n in track_for(spec.track).build_plan(spec, settings, reg) if n.kind == "report")
    src = SUITES / suite
    tidy = _table(src / "tidy.csv")
    if spec.track == "lm":
        from benchmark.lm.stages.report import analyze

        tidy = tidy[~tidy["metric"].isin(_OLD_METRICS)].reset_index(drop=True)
        teachers = _table(src / "teachers.csv")
        candidates = _table(src / "candidates.csv")
        if candidates.empty:
            candidates = made_up_candidates(tidy, teachers)
        analysis = analyze(tidy, teachers, node.spec, candidates=candidates)
    else:
        from benchmark.classifier.stages.report import analyze as analyze_classifier

        analysis = analyze_classifier(tidy, node.spec)
    out.mkdir(parents=True, exist_ok=True)
    written = write_analysis(analysis, out)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in written.values()}
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(id=node.id, key=node.key, name=node.name, spec_hash=node.spec_hash, spec=node.spec,
                    deps=list(node.deps), files=files, sizes={p.name: p.stat().st_size for p in written.values()},
                    result={"files": sorted(files)})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return out


def fresh_bundle(suite: str, out: Path) -> Path:
    """:func:`fresh_report` with its bundle exported beside it (as publishing writes it); returns ``bundle.json``."""
    from benchmark.bundle import BUNDLE, bundle_bytes, export_bundle

    directory = fresh_report(suite, out)
    (directory / BUNDLE).write_bytes(bundle_bytes(export_bundle(directory)))
    return directory / BUNDLE
