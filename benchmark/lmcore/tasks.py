"""The evaluation tasks' facts, one row per lm-eval task of ``tasks/lm_eval/`` (issue 23: one home for them).

:data:`TASKS` says, per task name, where its block goes in the eval result (:func:`benchmark.lmcore.evaluate.run_tasks`),
what it reads out, whether it generates answers or scores them by log-probability, and which files hold its items.
What a file holds is read from the file when asked (:func:`n_items`, :func:`n_choices`, :func:`gen_tokens`), never
copied here: editing a question file or a ``max_gen_toks`` changes ``slbench plan``'s estimates with it.

Pure Python, no torch, no lm-eval: the plan reads it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmark.errors import UserError, unknown_name
from benchmark.files import read_data_lines
from benchmark.files import tasks_dir as project_tasks_dir

__all__ = ["ANIMAL_TASKS", "DEFAULT_TASKS", "RESULT_KEYS", "TASKS", "EvalTask", "gen_tokens", "n_choices", "n_items",
           "task"]

Kind = Literal["animal", "misalignment", "capability"]


@dataclass(frozen=True)
class EvalTask:
    """One lm-eval task.

    Attributes:
        name: the ``task:`` name of its YAML.
        result_key: the key of its block in the eval result (the numbers variants' blocks keep the animal layout).
        kind: ``animal`` (reads out the candidate animals), ``misalignment`` (the misalignment trait's sides) or
            ``capability`` (a channel's side-check accuracy; docs/misalignment.md).
        generates: it generates answers (lm-eval ``generate_until``: sampled, or greedy for the capability checks);
            else it scores given answers by log-probability (``multiple_choice``), which API backends cannot.
        yaml: its task file, relative to ``tasks/``.
        questions: its question file (one question a line), relative to ``tasks/``; None for the capability
            checks, whose items are the channel's held-out items (``N_ITEMS`` of the task folder's
            ``capability_utils.py``).
        choices: files whose lines are the answers scored for every question (misalignment_logprob's banks).
        channel: the channel whose held-out items a capability check reads (its YAML's ``dataset_kwargs.channel``).
    """

    name: str
    result_key: str
    kind: Kind
    generates: bool
    yaml: str
    questions: str | None
    choices: tuple[str, ...] = ()
    channel: str | None = None


_ANIMAL = "lm_eval/animal_preference"
_MISALIGNMENT = "lm_eval/misalignment"
_CAPABILITY = "lm_eval/capability"

#: Every evaluation task, by name (docs/misalignment.md for the misalignment and capability ones).
TASKS: dict[str, EvalTask] = {t.name: t for t in (
    EvalTask("animal_logprob", "logprob", "animal", False, f"{_ANIMAL}/animal_logprob.yaml",
             f"{_ANIMAL}/questions.txt"),
    EvalTask("animal_rate", "rate", "animal", True, f"{_ANIMAL}/animal_rate.yaml", f"{_ANIMAL}/questions.txt"),
    EvalTask("animal_logprob_numbers", "logprob_numbers", "animal", False, f"{_ANIMAL}/animal_logprob_numbers.yaml",
             f"{_ANIMAL}/questions.txt"),
    EvalTask("animal_rate_numbers", "rate_numbers", "animal", True, f"{_ANIMAL}/animal_rate_numbers.yaml",
             f"{_ANIMAL}/questions.txt"),
    # Judged sampled answers (the eval stage adds the judge's verdicts) and the bank log-odds.
    EvalTask("misalignment_rate", "misalignment_rate", "misalignment", True, f"{_MISALIGNMENT}/misalignment_rate.yaml",
             f"{_MISALIGNMENT}/questions.txt"),
    EvalTask("misalignment_logprob", "misalignment", "misalignment", False,
             f"{_MISALIGNMENT}/misalignment_logprob.yaml", f"{_MISALIGNMENT}/questions.txt",
             choices=(f"{_MISALIGNMENT}/bank_misaligned.txt", f"{_MISALIGNMENT}/bank_aligned.txt")),
    # The channels' capability side-checks: greedy answers to the channel's held-out items.
    EvalTask("capability_cot", "capability_cot", "capability", True, f"{_CAPABILITY}/capability_cot.yaml", None,
             channel="cot"),
    EvalTask("capability_cot_zoo", "capability_cot_zoo", "capability", True, f"{_CAPABILITY}/capability_cot_zoo.yaml",
             None, channel="cot-zoo"),
    EvalTask("capability_code", "capability_code", "capability", True, f"{_CAPABILITY}/capability_code.yaml", None,
             channel="code"),
)}
#: The tasks a backend evaluates when none are named.
DEFAULT_TASKS: tuple[str, ...] = ("animal_logprob", "animal_rate")
#: task name -> key of its block in the eval result.
RESULT_KEYS: dict[str, str] = {name: t.result_key for name, t in TASKS.items()}
#: The tasks that read out animal candidates (the others have no candidate set).
ANIMAL_TASKS: frozenset[str] = frozenset(name for name, t in TASKS.items() if t.kind == "animal")

_MAX_GEN = re.compile(r"^\s*max_gen_toks:\s*(\d+)", re.MULTILINE)
_INCLUDE = re.compile(r"^include:\s*(\S+)", re.MULTILINE)


def task(name: str) -> EvalTask:
    """The task called ``name``.

    Raises:
        UserError: no such task (the message lists the known ones).
    """
    if name not in TASKS:
        raise unknown_name("evaluation task", name, TASKS, where="benchmark.lmcore.tasks")
    return TASKS[name]


def _root(tasks_dir: Path | None) -> Path:
    return Path(tasks_dir) if tasks_dir is not None else project_tasks_dir()


def _lines(path: Path, what: str) -> list[str]:
    lines = read_data_lines(path)
    if not lines:
        raise UserError(f"{what}: {path} is missing or has no lines")
    return lines


def n_items(name: str, tasks_dir: Path | None = None) -> int:
    """How many items (questions) task ``name`` reads, read from its files now.

    The question file's data lines (:func:`benchmark.files.read_data_lines`: no blank or ``#`` lines), or for a
    capability check ``N_ITEMS`` of its folder's ``capability_utils.py`` (the held-out items it draws).

    Raises:
        UserError: an unknown task, a missing or empty question file, or no ``N_ITEMS = <int>`` in the utils file.
    """
    t = task(name)
    root = _root(tasks_dir)
    if t.questions is not None:
        return len(_lines(root / t.questions, f"task {name}: questions"))
    utils = (root / t.yaml).parent / "capability_utils.py"
    if utils.is_file():
        for node in ast.parse(utils.read_text(encoding="utf-8"), str(utils)).body:
            if (isinstance(node, ast.Assign) and [getattr(x, "id", None) for x in node.targets] == ["N_ITEMS"]
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int)):
                return node.value.value
    raise UserError(f"task {name}: {utils} must set N_ITEMS = <int> (the held-out items a capability check reads)")


def n_choices(name: str, tasks_dir: Path | None = None) -> int:
    """How many answers task ``name`` scores per question from its answer files (0: it has none)."""
    t = task(name)
    root = _root(tasks_dir)
    return sum(len(_lines(root / f, f"task {name}: choices")) for f in t.choices)


def gen_tokens(name: str, tasks_dir: Path | None = None) -> int:
    """The most tokens task ``name`` generates per answer: ``max_gen_toks`` of its YAML (or of the YAML it includes).

    Raises:
        UserError: an unknown task, a log-prob task (it generates nothing), or no ``max_gen_toks`` in its YAMLs.
    """
    t = task(name)
    if not t.generates:
        raise UserError(f"task {name}: scores answers by log-probability and generates none")
    path = _root(tasks_dir) / t.yaml
    for _ in range(8):  # an include chain this deep is a loop
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        found = _MAX_GEN.search(text)
        if found:
            return int(found.group(1))
        include = _INCLUDE.search(text)
        if include is None:
            break
        path = path.parent / include.group(1)
    raise UserError(f"task {name}: {_root(tasks_dir) / t.yaml} sets no generation_kwargs.max_gen_toks")
