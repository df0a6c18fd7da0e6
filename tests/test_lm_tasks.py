"""The table of evaluation tasks (benchmark/lmcore/tasks.py) against the task files, and the design vocabulary
(benchmark/vocabulary.py) against the settings that spell it (issue 23: one home per fact)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.files import read_data_lines
from benchmark.lm.settings import LMSettings
from benchmark.lmcore.tasks import ANIMAL_TASKS, RESULT_KEYS, TASKS, gen_tokens, n_choices, n_items
from benchmark.vocabulary import CONTROLS

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "tasks"


def _yaml_field(path: Path, key: str) -> str | None:
    """``key: value`` of a task YAML, following ``include:`` (read as text: the files hold ``!function`` tags)."""
    text = path.read_text(encoding="utf-8")
    found = re.search(rf"^\s*{key}:\s*(\S+)", text, re.MULTILINE)
    if found:
        return found.group(1)
    include = re.search(r"^include:\s*(\S+)", text, re.MULTILINE)
    return _yaml_field(path.parent / include.group(1), key) if include else None


def test_table_names_every_task_file_and_agrees_with_it() -> None:
    declared = {}
    for path in sorted((TASKS_DIR / "lm_eval").rglob("*.yaml")):
        name = _yaml_field(path, "task")
        assert name is not None, path
        declared[name] = path
    assert set(declared) == set(TASKS)
    for name, t in TASKS.items():
        assert declared[name] == TASKS_DIR / t.yaml
        assert (_yaml_field(declared[name], "output_type") == "generate_until") == t.generates, name
        if t.channel is not None:
            assert _yaml_field(declared[name], "channel") == t.channel, name
    assert set(RESULT_KEYS) == set(TASKS) and len(set(RESULT_KEYS.values())) == len(TASKS)
    assert ANIMAL_TASKS == {"animal_logprob", "animal_rate", "animal_logprob_numbers", "animal_rate_numbers"}


def test_counts_are_read_from_the_files() -> None:
    for name, t in TASKS.items():
        if t.questions is not None:
            assert n_items(name) == len(read_data_lines(TASKS_DIR / t.questions)) > 0
    assert n_items("capability_cot") == 50  # N_ITEMS of tasks/lm_eval/capability/capability_utils.py
    assert n_choices("misalignment_logprob") == sum(
        len(read_data_lines(TASKS_DIR / "lm_eval" / "misalignment" / f"bank_{s}.txt")) for s in ("misaligned", "aligned"))
    assert n_choices("animal_rate") == 0
    assert (gen_tokens("animal_rate"), gen_tokens("animal_rate_numbers"), gen_tokens("misalignment_rate"),
            gen_tokens("capability_code")) == (8, 8, 48, 128)


def test_bad_task_files_are_one_line_errors(project_copy: Path) -> None:
    tasks = project_copy / "tasks"
    with pytest.raises(UserError, match="evaluation task 'animal_typo'"):
        n_items("animal_typo", tasks)
    with pytest.raises(UserError, match="generates none"):
        gen_tokens("animal_logprob", tasks)
    (tasks / "lm_eval" / "misalignment" / "questions.txt").write_text("# none left\n", encoding="utf-8")
    with pytest.raises(UserError, match="misalignment_rate: questions: .*questions.txt is missing or has no lines"):
        n_items("misalignment_rate", tasks)
    (tasks / "lm_eval" / "capability" / "capability_utils.py").write_text("N = 3\n", encoding="utf-8")
    with pytest.raises(UserError, match="must set N_ITEMS"):
        n_items("capability_code", tasks)
    rate = tasks / "lm_eval" / "animal_preference" / "animal_rate.yaml"
    rate.write_text(re.sub(r"max_gen_toks: \d+", "", rate.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(UserError, match="sets no generation_kwargs.max_gen_toks"):
        gen_tokens("animal_rate_numbers", tasks)


def test_settings_spell_the_vocabulary() -> None:
    assert typing.get_args(LMSettings.model_fields["controls"].annotation) == CONTROLS
    assert LMSettings().controls == CONTROLS[0]
