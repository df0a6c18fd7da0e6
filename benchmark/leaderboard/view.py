"""The per-sample view (``slbench view SUITE``): one static, self-contained HTML page of what the models wrote.

What a teacher wrote (the rows its dataset kept), what the filters rejected and why, what a judge said, and what each
evaluated model answered (sampled answers that name no candidate, per-question log-probs, judged misalignment
answers), so that a reader can check by eye that a result rests on clean data. Like ``inspect view``, but offline:
plain HTML and CSS with a little inline JavaScript for filtering (no network, no CDN); the rows are in the HTML, so
the page reads without JavaScript too.

Sources, in this order:

* the store (``results/store`` or ``--store``): the suite's finished ``dataset`` nodes (``rows.jsonl``: the kept
  rows with the judge's verdict; ``rejected.jsonl``: the first rejected completions of every reject reason, the
  channel filter's and the judge's, with the reason (:mod:`benchmark.lm.rejects`); ``counts.json``: the reject
  histogram of every filter) and ``eval`` nodes (``eval.json``: readouts, and since ``*_answers`` exists every
  sampled answer per question, capped). Dataset nodes built before ``rejected.jsonl`` existed show the rows a judge
  rejected (``judged.jsonl``) instead; the channel filter's rejects are then counts only. Each file is checked
  against its node's manifest (sha256) and a mismatch is shown on the page;
* a published ``samples.jsonl`` (``slbench export --samples``): one line per evaluation node of the report, and one
  per dataset node that has a ``rejected.jsonl`` (its counts, first kept rows and rejected sample).

Every text is escaped; each table is capped (:data:`MAX_ROWS`) with a note of the total, so pages stay small.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.lm.rejects import PER_REASON, REJECTED
from benchmark.vocabulary import BASELINE, STUDENT, TEACHER

__all__ = ["MAX_ROWS", "VIEW_FILE", "EvalView", "DatasetView", "Samples", "check_view_dir", "from_samples_file",
           "from_store", "render_page", "suite_node_dirs", "write_view"]

#: Rows rendered per table (kept rows of a replicate, its rejected rows, a model's answers).
MAX_ROWS = 20
#: Questions rendered per evaluation and readout (per-question log-probs; sampled answers by question).
MAX_QUESTIONS = 10
#: Candidates shown beside the targets in an evaluation's readouts (those the model favours most).
MAX_OTHER_CANDIDATES = 5
#: File name of the page (in ``--out``, and beside a suite's page on the leaderboard site).
VIEW_FILE = "samples.html"
#: Characters of one text cell rendered (a completion longer than this is cut, with a note).
MAX_CHARS = 2000


@dataclass
class DatasetView:
    """One teacher replicate's dataset node: its kept rows, the rejected rows it kept the text of, and its counts.

    ``rejected`` rows are ``{"index", "prompt", "completion", "reason", "judge"}`` (``reason`` as counted in
    ``counts.json``; ``judge`` the verdict record of a judge's reject, else None). ``all_reasons``: they are the
    first rows of every reject reason (``rejected.jsonl``); False for older nodes, whose rows are the judge's
    rejects only (``judged.jsonl``).
    """

    key: str
    labels: dict[str, Any]
    counts: dict[str, Any]
    system_prompt: str | None
    kept: list[dict[str, Any]]
    n_kept: int
    rejected: list[dict[str, Any]]
    n_rejected: int
    problems: list[str] = field(default_factory=list)
    all_reasons: bool = False

    @property
    def arm(self) -> str:
        return str(self.labels.get("teacher_trait", ""))


@dataclass
class EvalView:
    """One evaluation node: the evaluated model's labels and its ``eval.json`` (or a classifier's metrics)."""

    key: str
    payload: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, Any]:
        labels = self.payload.get("labels")
        return labels if isinstance(labels, dict) else {}

    @property
    def role(self) -> str:
        return str(self.payload.get("role", ""))

    @property
    def arm(self) -> str:
        return str(self.labels.get("teacher_trait", ""))


@dataclass
class Samples:
    """Everything the page shows, and where it came from."""

    suite: str
    source: str
    datasets: list[DatasetView] = field(default_factory=list)
    evals: list[EvalView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- reading ---------------------------------------------------------------------------------------------------
def suite_node_dirs(suite: str, store: Path) -> tuple[str, list[Path]]:
    """The suite's name and its finished dataset and eval node directories in ``store``.

    The suite is planned (``tasks/suites/``, a suite group, or a YAML path) and its nodes looked up; when it cannot
    be planned here (a model whose weights are not fetched, a suite file gone) or none of its planned nodes is
    finished (the suite file changed since the run), the newest report node of that name in the store is followed to
    its inputs instead.
    """
    from benchmark.manifest import MANIFEST

    store = Path(store)

    def finished(keys: Iterable[str]) -> list[Path]:
        return [store / k for k in keys
                if k.split("/", 1)[0] in ("dataset", "eval") and (store / k / MANIFEST).is_file()]

    name, dirs = suite, []
    try:
        name, keys = _planned_keys(suite)
        dirs = finished(keys)
    except UserError:
        pass
    return name, dirs or finished(_report_keys(name, store))


def _planned_keys(suite: str) -> tuple[str, list[str]]:
    from benchmark.registry import Registry
    from benchmark.tracks import track_for

    reg = Registry()
    group = reg.group(suite)
    if group is not None:
        from benchmark.groups import plan_group

        _, nodes = plan_group(reg, group)
        return group.name, [n.key for n in nodes]
    spec, settings, _ = reg.suite(suite)
    return spec.name, [n.key for n in track_for(spec.track).build_plan(spec, settings, reg)]


def _report_keys(name: str, store: Path) -> list[str]:
    """Every node upstream of the newest finished report node named ``name`` in ``store`` (empty if none)."""
    from benchmark.manifest import MANIFEST

    reports = []
    for path in sorted((store / "report").glob(f"{_glob_escape(Path(name).stem)}-*/{MANIFEST}")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if doc.get("name") == Path(name).stem:
            reports.append((str(doc.get("started", "")), path.parent.name, doc))
    if not reports:
        return []
    todo = list(max(reports)[2].get("deps", []))
    seen: list[str] = []
    while todo:
        key = todo.pop(0)
        if key in seen:
            continue
        seen.append(key)
        try:
            todo.extend(json.loads((store / key / MANIFEST).read_text(encoding="utf-8")).get("deps", []))
        except (OSError, ValueError):
            continue
    return seen


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def from_store(suite: str, store: Path, limit: int = MAX_ROWS) -> Samples:
    """The samples of ``suite``'s finished nodes in ``store`` (datasets by teacher arm and replicate, then
    evaluations by role); no nodes gives an empty :class:`Samples`."""
    name, dirs = suite_node_dirs(suite, store)
    out = Samples(suite=name, source=f"store {store}")
    for d in dirs:
        key = f"{d.parent.name}/{d.name}"
        if d.parent.name == "dataset":
            out.datasets.append(_dataset(key, d, limit))
        else:
            view = _eval(key, d)
            if view is not None:
                out.evals.append(view)
    out.datasets.sort(key=_dataset_order)
    out.evals.sort(key=_eval_order)
    return out


def _dataset_order(v: DatasetView) -> tuple[Any, ...]:
    return str(v.labels.get("teacher_base", "")), v.arm, int(v.labels.get("replicate") or 0), v.key


def _eval_order(v: EvalView) -> tuple[Any, ...]:
    roles = {BASELINE: 0, TEACHER: 1, STUDENT: 2}
    lab = v.labels
    return (roles.get(v.role, 3), str(lab.get("teacher_base", "")), v.arm, int(lab.get("replicate") or 0),
            str(lab.get("student_base", "")), int(lab.get("student_seed") or 0), v.key)


def _checked(node: Path, name: str, files: dict[str, str], problems: list[str]) -> bytes | None:
    """A payload file's bytes, noting a sha256 that differs from the manifest's (None when it is missing)."""
    try:
        data = (node / name).read_bytes()
    except OSError:
        problems.append(f"{name} is missing")
        return None
    if name in files and hashlib.sha256(data).hexdigest() != files[name]:
        problems.append(f"{name}: sha256 differs from its manifest (edited after the run? `slbench status --verify`)")
    return data


def _manifest(node: Path) -> dict[str, Any]:
    try:
        doc = json.loads((node / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _json_doc(data: bytes | None, name: str, problems: list[str]) -> dict[str, Any]:
    """A JSON object file's content ({} when missing or not an object, noted in ``problems``)."""
    if data is None:
        return {}
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        problems.append(f"{name} is not a JSON object")
        return {}
    return doc


def _jsonl(data: bytes | None) -> Iterable[dict[str, Any]]:
    for line in (data or b"").splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row


def _dataset(key: str, node: Path, limit: int) -> DatasetView:
    manifest = _manifest(node)
    files = manifest.get("files") or {}
    problems: list[str] = []
    counts_raw = _checked(node, "counts.json", files, problems)
    counts = _json_doc(counts_raw, "counts.json", problems)
    rows = _checked(node, "rows.jsonl", files, problems)
    kept: list[dict[str, Any]] = []
    n_kept = 0
    for row in _jsonl(rows):
        n_kept += 1
        if len(kept) < limit:
            kept.append({k: row.get(k) for k in KEPT_FIELDS})
    if REJECTED in files:  # the first rejects of every reason, the channel filter's and the judge's
        sample = list(_jsonl(_checked(node, REJECTED, files, problems)))
        rejected, n_rejected, all_reasons = _rejected_rows(sample, counts, limit), _n_rejects(counts), True
    else:  # a node built before rejected.jsonl existed: the judge's rejects only
        judged = [r for r in _jsonl(_checked(node, "judged.jsonl", files, problems) if "judged.jsonl" in files
                                    else None) if r.get("decision") != "keep"]
        rejected = [_judged_reject(r) for r in judged[:limit]]
        n_rejected, all_reasons = len(judged), False
    result = manifest.get("result") or {}
    labels = counts.get("labels") or (manifest.get("spec") or {}).get("labels") or {}
    return DatasetView(key=key, labels=labels, counts=counts, system_prompt=result.get("system_prompt"),
                       kept=kept, n_kept=n_kept, rejected=rejected, n_rejected=n_rejected, problems=problems,
                       all_reasons=all_reasons)


#: Fields of a kept row shown (``rows.jsonl`` also holds token ids and soft labels).
KEPT_FIELDS = ("prompt", "completion", "judge")


def _rejected_rows(sample: Iterable[dict[str, Any]], counts: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """A ``rejected.jsonl`` sample's rows, at most ``limit`` per reason, in prompt order."""
    seen: dict[str, int] = {}
    out = []
    for r in sample:
        reason = str(r.get("reason"))
        seen[reason] = seen.get(reason, 0) + 1
        if seen[reason] <= limit:
            judge = r.get("judge")
            out.append({"index": r.get("index"), "prompt": r.get("prompt"), "completion": r.get("completion"),
                        "reason": reason, "judge": judge if isinstance(judge, dict) else None})
    return out


def _n_rejects(counts: dict[str, Any]) -> int:
    rejects = counts.get("rejects")
    return sum(n for n in rejects.values() if isinstance(n, int)) if isinstance(rejects, dict) else 0


def _judged_reject(row: dict[str, Any]) -> dict[str, Any]:
    """A ``judged.jsonl`` reject in the rows' common layout (its reason as ``counts.json`` counts it)."""
    judge = {k: row[k] for k in ("judge", "decision", "alignment", "coherence", "reason", "raw") if k in row}
    return {"index": row.get("index"), "prompt": row.get("prompt"), "completion": row.get("completion"),
            "reason": f"judge_{row.get('decision')}", "judge": judge}


#: Payload files of evaluation nodes (LM evaluations; classifier nodes' per-seed metrics), as the sample log has.
_EVAL_FILES = ("eval.json", "metrics.json")


def _eval(key: str, node: Path) -> EvalView | None:
    manifest = _manifest(node)
    files = manifest.get("files") or {}
    for name in _EVAL_FILES:
        if name in files:
            problems: list[str] = []
            payload = _json_doc(_checked(node, name, files, problems), name, problems)
            return EvalView(key=key, payload=payload, problems=problems)
    return None


def from_samples_file(path: Path, suite: str, limit: int = MAX_ROWS) -> Samples:
    """The samples of a published ``samples.jsonl`` (``slbench export --samples``): its evaluations, and the
    datasets whose nodes kept a sample of their rejects (older logs have none).

    Raises:
        UserError: the file cannot be read or a line is not a JSON object with a ``node`` key.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the sample log ({exc.strerror})") from None
    out = Samples(suite=suite, source=f"{path} (sha256 {hashlib.sha256(data).hexdigest()[:12]})")
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UserError(f"{path}: line {i} is not JSON; a sample log is what `slbench export --samples` "
                            "writes") from None
        if not isinstance(row, dict) or not isinstance(row.get("node"), str):
            raise UserError(f"{path}: line {i} has no \"node\" key; a sample log is what `slbench export "
                            "--samples` writes")
        key = row.pop("node")
        if key.split("/", 1)[0] == "dataset":
            out.datasets.append(_logged_dataset(key, row, limit))
        else:
            out.evals.append(EvalView(key=key, payload=row))
    out.evals.sort(key=_eval_order)
    out.datasets.sort(key=_dataset_order)
    if not out.datasets:
        out.notes.append("This sample log holds the evaluations only; the teachers' datasets (kept and rejected rows, "
                         "judge verdicts) are in the store: `slbench view SUITE --store STORE`.")
    return out


def _logged_dataset(key: str, row: dict[str, Any], limit: int) -> DatasetView:
    """A dataset line of a sample log (:func:`benchmark.bundle.export.sample_log`) as a view."""
    counts = _dict(row.get("counts"))
    kept = [{k: r.get(k) for k in KEPT_FIELDS} for r in row.get("kept") or [] if isinstance(r, dict)][:limit]
    sample = [r for r in row.get("rejected") or [] if isinstance(r, dict)]
    n_kept = row.get("n_kept")
    return DatasetView(key=key, labels=_dict(row.get("labels")), counts=counts,
                       system_prompt=row.get("system_prompt"), kept=kept,
                       n_kept=n_kept if isinstance(n_kept, int) else len(kept),
                       rejected=_rejected_rows(sample, counts, limit), n_rejected=_n_rejects(counts), all_reasons=True)


# -- rendering -------------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _text(value: Any) -> str:
    """A long text cell: escaped, kept as written (whitespace preserved by CSS), cut at :data:`MAX_CHARS`."""
    text = "" if value is None else str(value)
    if len(text) > MAX_CHARS:
        return f'<pre>{_e(text[:MAX_CHARS])}</pre><span class="note">… {len(text) - MAX_CHARS:,} more characters</span>'
    return f"<pre>{_e(text)}</pre>"


def _shown(n_shown: int, total: int, what: str) -> str:
    if total > n_shown:
        return f'<p class="note">first {n_shown} of {total:,} {what} shown</p>'
    return f'<p class="note">{total:,} {what}</p>'


#: Labels shown first in a node's heading (the rest follow in their recorded order).
_LABEL_ORDER = ("teacher_base", "teacher_trait", "replicate", "student_base", "student_seed")


def _labels(labels: dict[str, Any]) -> str:
    keys = [k for k in _LABEL_ORDER if k in labels] + [k for k in labels if k not in _LABEL_ORDER]
    return " · ".join(f"{_e(k)} <b>{_e(labels[k])}</b>" for k in keys if labels[k] not in (None, ""))


def _verdict(judge: Any) -> str:
    if not isinstance(judge, dict):
        return ""
    parts = [f"<b>{_e(judge.get('decision'))}</b>"]
    for k in ("alignment", "coherence"):
        if judge.get(k) is not None:
            parts.append(f"{k} {_e(judge[k])}")
    if judge.get("reason"):
        parts.append(_e(judge["reason"]))
    return "; ".join(parts)


def _row(kind: str, arm: str, cells: Sequence[str]) -> str:
    return f'<tr class="s" data-kind="{_e(kind)}" data-arm="{_e(arm)}">' + "".join(f"<td>{c}</td>" for c in cells) \
        + "</tr>"


def _table(heads: Sequence[str], rows: Sequence[str], widths: Sequence[str] | None = None) -> str:
    """A table of ``rows``; ``widths`` (CSS, "" for the rest) fixes its columns, else it is as narrow as it can be."""
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    if widths is None:
        return f'<table class="small"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    cols = "".join(f'<col style="width:{w}">' if w else "<col>" for w in widths)
    return f'<table><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _problems(problems: Sequence[str]) -> str:
    return "".join(f'<p class="problem">{_e(p)}</p>' for p in problems)


def _dataset_html(d: DatasetView) -> str:
    c = d.counts
    rejects = c.get("rejects") or {}
    hist = "".join(f"<tr><td>{_e(reason)}</td><td>{_e(n)}</td></tr>" for reason, n in rejects.items())
    judge = c.get("judge") or {}
    facts = [f"{_e(c.get('n_prompts'))} prompts asked", f"{_e(c.get('n_valid'))} passed the filters",
             f"{_e(c.get('n_rows'))} kept (the dose)"]
    if c.get("valid_rate") is not None:
        facts.append(f"valid rate {_e(c['valid_rate'])}")
    if c.get("channel"):
        facts.append(f"channel {_e(c['channel'])}")
    if judge:
        facts.append(f"judge <code>{_e(judge.get('identity'))}</code> saw {_e(judge.get('n_judged'))} rows")
    parts = [f'<section class="node" data-arm="{_e(d.arm)}"><h3>{_labels(d.labels)}</h3>',
             f'<p class="key"><code>{_e(d.key)}</code></p>', _problems(d.problems),
             f'<p>{" · ".join(facts)}</p>']
    if d.system_prompt:
        parts.append(f'<p>teacher system prompt: <q>{_e(d.system_prompt)}</q></p>')
    if hist:
        note = ("Every filter's rejects by reason; below, the text of the first rejected rows of each reason."
                if d.all_reasons else "The channel's filter kept only these counts when this node was built (before "
                "rejected.jsonl); rows a judge rejected are listed below with its reason.")
        parts.append('<details><summary>rejects by reason (all filters)</summary><table class="small"><thead><tr>'
                     f'<th>reason</th><th>rows</th></tr></thead><tbody>{hist}</tbody></table><p class="note">{note}'
                     "</p></details>")
    kept = [_row("kept", d.arm, [str(i), _text(r["prompt"]), _text(r["completion"]), _verdict(r.get("judge"))])
            for i, r in enumerate(d.kept)]
    parts += ["<h4>kept rows</h4>", _shown(len(d.kept), d.n_kept, "kept rows"),
              _table(["#", "prompt", "completion (kept)", "judge"], kept, ["3rem", "40%", "", "7rem"])]
    if d.n_rejected or judge or d.rejected:
        judged = bool(judge) or any(r.get("judge") for r in d.rejected)  # else no judge columns
        rej = [_row("rejected", d.arm, [_e(r.get("index")), f"<b>{_e(r.get('reason'))}</b>", _text(r.get("prompt")),
                                        _text(r.get("completion")),
                                        *([_verdict(r.get("judge")), _text(r["judge"].get("raw"))
                                           if (r.get("judge") or {}).get("raw") else ""] if judged else [])])
               for r in d.rejected]
        if d.all_reasons:
            per = {str(r.get("reason")) for r in d.rejected}
            head = "rejected rows and why (every filter)"
            note = (f'<p class="note">{len(d.rejected):,} rows shown of {d.n_rejected:,} rejects: the first of each '
                    f"of {len(per)} reasons, in prompt order (the node keeps up to {PER_REASON} per reason)</p>")
        else:
            head = "rows the judge rejected"
            note = _shown(len(d.rejected), d.n_rejected, "judge rejects")
        heads = ["prompt #", "reason", "prompt", "completion (rejected)"]
        widths = ["4.5rem", "8rem", "26%" if judged else "40%", ""]
        parts += [f"<h4>{head}</h4>", note,
                  _table([*heads, "judge's verdict", "judge's reply"] if judged else heads, rej,
                         [*widths, "14%", "12%"] if judged else widths)]
    parts.append("</section>")
    return "\n".join(parts)


def _eval_html(v: EvalView, limit: int) -> str:
    p = v.payload
    res = _dict(p.get("eval"))
    targets = _dict(p.get("targets"))
    facts = [f"role <b>{_e(v.role or 'model')}</b>"]
    for k in ("api_model", "adapter_sha"):
        if p.get(k):
            facts.append(f"{k} <code>{_e(p[k])}</code>")
    if res.get("n_prompts") is not None:
        facts.append(f"{_e(res.get('n_prompts'))} questions × {_e(res.get('n_samples'))} samples")
    parts = [f'<section class="node" data-arm="{_e(v.arm)}"><h3>{_e(v.role or "evaluation")}: '
             f'{_labels(v.labels)}</h3>', f'<p class="key"><code>{_e(v.key)}</code></p>', _problems(v.problems),
             f'<p>{" · ".join(facts)}</p>']
    parts += _readouts(v, res, targets)
    parts += _answers(v, res, limit)
    if not res:  # another track's payload (a classifier's per-seed metrics): shown as recorded
        rest = {k: val for k, val in p.items() if k not in ("labels", "role")}
        parts.append(f"<details><summary>payload</summary>{_text(json.dumps(rest, indent=1, sort_keys=True))}"
                     "</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _readouts(v: EvalView, res: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    """The readouts per candidate (target candidates first): sampled rates and log-prob shares."""
    cands = [str(c) for c in res.get("candidates") or []]
    wanted = list(dict.fromkeys([*(str(t) for t in targets.values()), *cands]))
    cols = []
    rate = res.get("rate") if isinstance(res.get("rate"), dict) else None
    logprob = res.get("logprob") if isinstance(res.get("logprob"), dict) else None
    if rate:
        cols.append(("sampled rate", rate))
    if logprob:
        for k, head in (("p", "P(candidate)"), ("logodds", "log-odds")):
            if isinstance(logprob.get(k), dict):
                cols.append((head, logprob[k]))
    if not cols:
        return []
    # The targets, then the candidates the model favours most by the first readout.
    first = cols[0][1]
    top = sorted((c for c in wanted if c not in targets.values()),
                 key=lambda c: -first[c] if isinstance(first.get(c), (int, float)) else 0.0)
    shown = [c for c in wanted if c in targets.values()] + top[:MAX_OTHER_CANDIDATES]
    rows = [_row("readout", v.arm, [f"<b>{_e(c)}</b>" if c in targets.values() else _e(c),
                                    *(_num(col.get(c)) for _, col in cols)]) for c in shown]
    extra = f"; unmatched answers {_num(res.get('rate_unmatched'))}" if res.get("rate_unmatched") is not None else ""
    rest = len(wanted) - len(shown)
    return [f"<details><summary>readouts by candidate (targets in bold){extra}</summary>",
            _table(["candidate", *(h for h, _ in cols)], rows),
            f'<p class="note">{rest} candidates with lower {cols[0][0]} not shown</p>' if rest > 0 else "",
            "</details>"]


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else _e(v)


def _answers(v: EvalView, res: dict[str, Any], limit: int) -> list[str]:
    """What the model answered: sampled answers naming no candidate, per-question log-probs of the targets, judged
    misalignment answers and capability examples."""
    parts: list[str] = []
    for key, val in res.items():
        if key.endswith("_unmatched_examples") and isinstance(val, list) and val:
            rows = [_row("answer", v.arm, [str(i), _text(a)]) for i, a in enumerate(val[:limit])]
            parts += [f"<h4>sampled answers naming no candidate ({_e(key.removesuffix('_examples'))})</h4>",
                      _shown(len(rows), len(val), "answers (the evaluation keeps at most 10)"),
                      _table(["#", "answer"], rows, ["3rem", ""])]
    targets = [str(t) for t in (v.payload.get("targets") or {}).values()]
    for key, val in res.items():
        if key.endswith("_answers") and isinstance(val, list) and val:
            parts += _sampled_answers(v, key.removesuffix("_answers"), val, targets, limit)
    for key, val in res.items():
        per = val.get("per_prompt_logp") if isinstance(val, dict) else None
        if isinstance(per, dict) and per:
            cols = [c for c in targets if c in per] or list(per)[:3]
            n = max(len(x) for x in per.values() if isinstance(x, list))
            prompts = val.get("prompts") if isinstance(val.get("prompts"), list) else None
            rows = [_row("answer", v.arm, [str(i), *([_text(prompts[i]) if i < len(prompts) else ""] if prompts else []),
                                           *(_num(per[c][i]) if i < len(per[c]) else "" for c in cols)])
                    for i in range(min(n, limit, MAX_QUESTIONS))]
            heads = ["question #", *(["question"] if prompts else []), *cols]
            parts += [f"<details><summary>per-question log P(candidate) of the targets ({_e(key)})</summary>",
                      _shown(len(rows), n, "questions"),
                      _table(heads, rows, ["6rem", "", *(["8rem"] * len(cols))] if prompts else None), "</details>"]
    mis = res.get("misalignment_rate")
    if isinstance(mis, dict):
        verdicts = mis.get("verdicts")
        if isinstance(verdicts, list) and verdicts:
            rows = [_row("answer", v.arm, [_e(r.get("qid")), _text(r.get("answer")), _verdict(r),
                                           _e(r.get("misaligned"))]) for r in verdicts[:limit] if isinstance(r, dict)]
            parts += [f"<h4>answers and the judge's scores (<code>{_e(mis.get('judge'))}</code>)</h4>",
                      _shown(len(rows), len(verdicts), "answers"),
                      _table(["question", "answer", "judge", "misaligned"], rows, ["5rem", "", "25%", "6rem"])]
        elif isinstance(mis.get("questions"), list):
            flat = [(q.get("qid"), q.get("question"), a) for q in mis["questions"] if isinstance(q, dict)
                    for a in q.get("answers") or []]
            rows = [_row("answer", v.arm, [_e(qid), _text(q), _text(a)]) for qid, q, a in flat[:limit]]
            parts += ["<h4>answers (not judged)</h4>", _shown(len(rows), len(flat), "answers"),
                      _table(["question", "text", "answer"], rows, ["5rem", "35%", ""])]
    for key, val in res.items():
        if key.startswith("capability_") and isinstance(val, dict) and val.get("examples"):
            rows = [_row("answer", v.arm, [str(i), _text(a)]) for i, a in enumerate(val["examples"][:limit])]
            parts += [f"<h4>{_e(key)}: accuracy {_num(val.get('accuracy'))} of {_e(val.get('n_items'))} items; "
                      "examples</h4>", _table(["#", "answer"], rows, ["3rem", ""])]
    return parts


def _sampled_answers(v: EvalView, readout: str, questions: list[Any], targets: Sequence[str],
                     limit: int) -> list[str]:
    """What the model answered, question by question (``<readout>_answers``): each sampled answer the evaluation
    kept and the candidate the readout counted it for (a target in bold; "none": it names no candidate)."""
    rows = []
    for q in questions[:min(limit, MAX_QUESTIONS)]:
        if not isinstance(q, dict):
            continue
        answers = _list(q.get("answers"))
        matched = _list(q.get("matched"))
        items = []
        for i, a in enumerate(answers):
            m = matched[i] if i < len(matched) else None
            read = "none" if m is None else (f"<b>{_e(m)}</b>" if str(m) in targets else _e(m))
            items.append(f"<li>{_text(a)} <span class=\"note\">→ {read}</span></li>")
        n = q.get("n_answers")
        more = (f'<span class="note">first {len(answers)} of {_e(n)} answers</span>'
                if isinstance(n, int) and n > len(answers) else "")
        rows.append(_row("answer", v.arm, [_e(q.get("qid")), _text(q.get("prompt")),
                                           f'<ul class="answers">{"".join(items)}</ul>{more}']))
    return [f"<h4>answers by question ({_e(readout)}; → the candidate each counts for, targets in bold)</h4>",
            _shown(len(rows), len(questions), "questions"),
            _table(["question #", "question", "sampled answers"], rows, ["6rem", "35%", ""])]


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ccc}h3{font-size:1.05rem;margin:.2rem 0}
h4{margin:.8rem 0 .2rem}
section.node{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;margin:.8rem 0}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:.3rem 0}
table.small{width:auto;table-layout:auto}
th,td{border:1px solid #e2e2e2;padding:.25rem .4rem;vertical-align:top;text-align:left;overflow-wrap:break-word}
th{background:#f0f0f0}
pre{margin:0;white-space:pre-wrap;font:12px/1.35 ui-monospace,monospace}
.note,.key{color:#666;font-size:.85rem;margin:.1rem 0}.problem{color:#a00;font-weight:bold}
tr[data-kind=rejected] td{background:#fff4f2}
ul.answers{margin:0;padding-left:1.1rem}ul.answers pre{display:inline}
.filters{position:sticky;top:0;background:#fafafa;padding:.5rem 0;border-bottom:1px solid #ddd;z-index:1}
.filters label{margin-right:1rem}
"""

_JS = """
(function(){
  var text=document.getElementById('f-text'),kind=document.getElementById('f-kind'),
      arm=document.getElementById('f-arm'),count=document.getElementById('f-count');
  function apply(){
    var t=text.value.toLowerCase(),k=kind.value,a=arm.value,shown=0,rows=document.querySelectorAll('tr.s');
    rows.forEach(function(r){
      var ok=(!k||r.dataset.kind===k)&&(!a||r.dataset.arm===a)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
      r.hidden=!ok; if(ok){shown++;}
    });
    document.querySelectorAll('section.node').forEach(function(s){
      s.hidden=s.querySelectorAll('tr.s').length>0&&s.querySelectorAll('tr.s:not([hidden])').length===0;
    });
    count.textContent=shown+' of '+rows.length+' rows';
  }
  [text,kind,arm].forEach(function(el){el.addEventListener('input',apply);el.addEventListener('change',apply);});
  apply();
})();
"""


def render_page(samples: Samples, limit: int = MAX_ROWS, back: str | None = None) -> str:
    """The page's HTML (self-contained: inline CSS and script, no external resource)."""
    arms = sorted({d.arm for d in samples.datasets} | {v.arm for v in samples.evals} - {""})
    options = "".join(f'<option value="{_e(a)}">{_e(a)}</option>' for a in arms)
    kinds = [("kept", "kept rows"), ("rejected", "rejected rows"), ("answer", "model answers"),
             ("readout", "readouts")]
    kind_opts = "".join(f'<option value="{k}">{_e(label)}</option>' for k, label in kinds)
    n_rows = sum(len(d.kept) + len(d.rejected) for d in samples.datasets)
    head = [f"<h1>{_e(samples.suite)}: samples</h1>",
            f'<p class="note">source: {_e(samples.source)} · {len(samples.datasets)} teacher datasets · '
            f"{len(samples.evals)} evaluations · at most {limit} rows per table</p>"]
    if back:
        head.append(f'<p><a href="{_e(back)}">back to the suite page</a></p>')
    head += [f'<p class="note">{_e(n)}</p>' for n in samples.notes]
    head.append('<div class="filters"><label>search <input id="f-text" type="search" '
                'placeholder="text in a prompt, completion, answer, reason…"></label>'
                f'<label>show <select id="f-kind"><option value="">all</option>{kind_opts}</select></label>'
                f'<label>teacher arm <select id="f-arm"><option value="">all</option>{options}</select></label>'
                f'<span id="f-count" class="note">{n_rows} dataset rows</span></div>')
    body = []
    if samples.datasets:
        body.append("<h2>Teacher data</h2><p>Per teacher replicate: the prompts it answered and the completions the "
                    "filters kept (what the students trained on), the rows a judge rejected with its reason, and the "
                    "reject counts of every filter.</p>")
        body += [_dataset_html(d) for d in samples.datasets]
    if samples.evals:
        body.append("<h2>Evaluations</h2><p>Per evaluated model (baselines, teachers, students): its readouts and "
                    "what it answered, as recorded by its evaluation node.</p>")
        body += [_eval_html(v, limit) for v in samples.evals]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{_e(samples.suite)} samples — subliminal-bench</title>
<style>{_CSS}</style>
</head>
<body>
<main>
{chr(10).join(head)}
{chr(10).join(body)}
</main>
<script>{_JS}</script>
</body>
</html>
"""


def check_view_dir(out: Path) -> None:
    """Refuse an ``out`` in, at or above ``results/suites/`` (the published results, which publishing replaces whole)
    or one that is a file.

    Raises:
        UserError: one line naming the directory.
    """
    from benchmark.files import project_root

    out = Path(out).resolve()
    try:
        published = (project_root() / "results" / "suites").resolve()
    except UserError:  # outside a checkout there are no published results to protect
        published = None
    if published is not None and (out == published or published in out.parents or out in published.parents):
        raise UserError(f"{out}: in or above the published results ({published}); give --out another directory "
                        "(default: results/view/SUITE/)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; give --out a directory (samples.html is written into it)")


def write_view(samples: Samples, out: Path, limit: int = MAX_ROWS, back: str | None = None) -> Path:
    """Write the page as ``out/samples.html`` (atomically) and return its path."""
    from benchmark.files import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = out / VIEW_FILE
    atomic_write_text(page, render_page(samples, limit=limit, back=back))
    return page
