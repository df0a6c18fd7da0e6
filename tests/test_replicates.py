"""The LM track's design: teacher replicates, arms and controls, seeds, equal doses, trait strength, profiles.

Plan-level tests build plans only (no compute); the dataset and teacher stages run against fake backends, so the
top-up and the min_shift check are exercised exactly, in well under a second each.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.dag import Node, StageContext
from benchmark.errors import UserError
from benchmark.hashing import derive_seed, shift_seed
from benchmark.lm.plan import replicate_seeds
from benchmark.lm.settings import LMSettings
from benchmark.providers.base import Capabilities, FineTuned, Loaded, Tuned
from benchmark.registry import Registry
from benchmark.tracks import track_for

SUITE: dict[str, Any] = {
    "name": "rep",
    "track": "lm",
    "teachers": ["zoo-qwen-a", "zoo-qwen-b"],
    "students": ["zoo-qwen-a"],
    "traits": ["owl", "cat"],
    "seeds": 2,
    "settings": {"replicates": 3, "aa_arm": True,
                 "teacher": {"train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}}},
                 "dataset": {"n_prompts": 24, "n_keep": 12}},
}


def _plan(project: Path, **changes: Any) -> list[Node]:
    suite = {**SUITE, **{k: v for k, v in changes.items() if k != "settings"}}
    suite["settings"] = {**SUITE["settings"], **changes.get("settings", {})}
    (project / "tasks" / "suites" / "rep.yaml").write_text(yaml.safe_dump(suite))
    reg = Registry(project)
    spec, settings, _ = reg.suite("rep")
    return track_for("lm").build_plan(spec, settings, reg)


def _teacher_seeds(n: Node) -> tuple[int, int, int]:
    return n.spec["seed"], n.spec["rows_seed"], n.spec["train"]["lora"]["init_seed"]


# -- plan ----------------------------------------------------------------------------------------------------
def test_plan_counts_with_replicates_and_the_aa_arm(project_copy):
    nodes = _plan(project_copy)
    kinds = Counter(n.kind for n in nodes)
    # 2 teacher bases × 3 arms (owl, cat, aa:cat) × 3 replicates; each replicate's dataset × 1 student × 2 seeds;
    # evals: 1 baseline + 18 teachers + 36 students.
    assert kinds == {"base": 2, "teacher": 18, "dataset": 18, "student": 36, "eval": 55, "report": 1}
    names = {n.name for n in nodes}
    assert {"zoo-qwen-a.aa-cat.r2", "zoo-qwen-b.owl.r0", "zoo-qwen-a.cat.r1.to.zoo-qwen-a.s1",
            "teacher.zoo-qwen-b.aa-cat.r0", "student.zoo-qwen-a.owl.r2.to.zoo-qwen-a.s0", "baseline.zoo-qwen-a"} <= names
    ev = next(n for n in nodes if n.name == "student.zoo-qwen-a.aa-cat.r2.to.zoo-qwen-a.s1")
    teacher = next(n for n in nodes if n.kind == "teacher" and n.name == "zoo-qwen-a.aa-cat.r2")
    assert ev.spec["labels"] == {"teacher_base": "zoo-qwen-a", "teacher_trait": "aa:cat", "replicate": 2,
                                 "teacher_id": teacher.id, "student_base": "zoo-qwen-a", "student_seed": 1}
    report = next(n for n in nodes if n.kind == "report")
    assert len(report.deps) == 55 + 18  # every eval and every dataset (the teachers table's dose facts)
    assert report.spec["arms"] == ["owl", "cat", "aa:cat"] and report.spec["replicates"] == 3
    assert report.spec["controls"] == "other_trait"
    assert {k for k in report.spec["analysis"] if k != "__spec__"} == {"alternative", "n_perm"}
    assert report.spec["analysis"]["alternative"] == "two-sided" and report.spec["analysis"]["n_perm"] == 10000


def test_neutral_controls_add_a_neutral_arm(project_copy):
    nodes = _plan(project_copy, settings={"controls": "neutral", "aa_arm": False, "replicates": 2})
    teachers = [n for n in nodes if n.kind == "teacher"]
    assert len(teachers) == 2 * 3 * 2
    neutral = [n for n in teachers if ".neutral." in n.name]
    assert len(neutral) == 4 and all(n.spec["trait"] is None and n.spec["arm"] == "neutral" for n in neutral)
    # Made like the trait teachers: the same recipe and number of trait rows.
    owl = next(n for n in teachers if n.name == "zoo-qwen-a.owl.r0")
    assert neutral[0].spec["train"]["epochs"] == owl.spec["train"]["epochs"]
    assert neutral[0].spec["n_rows"] == owl.spec["n_rows"]


def test_other_trait_controls_need_two_traits(project_copy):
    with pytest.raises(UserError) as err:
        _plan(project_copy, traits=["owl"])
    msg = str(err.value)
    assert "settings.controls" in msg and "at least two traits" in msg and "'neutral'" in msg
    assert len(msg.splitlines()) == 1
    assert len([n for n in _plan(project_copy, traits=["owl"], settings={"controls": "neutral"})
                if n.kind == "teacher"]) == 2 * 3 * 3  # (neutral, owl, aa:owl) × 3 replicates


def test_aa_arm_is_the_last_trait_made_again_with_other_seeds(project_copy):
    nodes = _plan(project_copy)
    teachers = {n.name: n for n in nodes if n.kind == "teacher"}
    datasets = {n.name: n for n in nodes if n.kind == "dataset"}
    cat, aa = teachers["zoo-qwen-a.cat.r0"].spec, teachers["zoo-qwen-a.aa-cat.r0"].spec
    seeds = ("arm", "seed", "rows_seed", "train")
    assert {k: v for k, v in cat.items() if k not in seeds} == {k: v for k, v in aa.items() if k not in seeds}
    assert {**cat["train"], "lora": None} == {**aa["train"], "lora": None}  # same recipe, other adapter init
    assert set(_teacher_seeds(teachers["zoo-qwen-a.cat.r0"])).isdisjoint(_teacher_seeds(teachers["zoo-qwen-a.aa-cat.r0"]))
    ds_cat, ds_aa = datasets["zoo-qwen-a.cat.r0"].spec, datasets["zoo-qwen-a.aa-cat.r0"].spec
    assert ds_cat["seed"] != ds_aa["seed"] and ds_cat["n_keep"] == ds_aa["n_keep"] == 12


def test_replicate_seeds_are_distinct_deterministic_and_shifted_by_the_suite_seed(project_copy):
    nodes = _plan(project_copy)
    teachers = [n for n in nodes if n.kind == "teacher"]
    datasets = [n for n in nodes if n.kind == "dataset"]
    # Every replicate of every arm on every teacher base has its own training, trait-row, adapter-init and
    # prompt seeds: (teacher base, replicate) clusters are independent experiments.
    per_rep = {(n.spec["model"], n.spec["arm"], n.spec["replicate"]): _teacher_seeds(n) for n in teachers}
    assert len(per_rep) == len(teachers) and len(set(per_rep.values())) == len(teachers)
    assert len({s for seeds in per_rep.values() for s in seeds}) == 3 * len(teachers)
    assert len({n.spec["seed"] for n in datasets}) == len(datasets)
    assert all(0 <= s < 2**30 for seeds in per_rep.values() for s in seeds)
    # Deterministic: the same suite plans the same ids.
    assert [n.id for n in _plan(project_copy)] == [n.id for n in nodes]
    # The suite seed moves every seed of the suite (students too), and leaves the bases alone.
    moved = _plan(project_copy, seed=7)
    by_name = {(n.kind, n.name): n for n in nodes}
    for n in moved:
        old = by_name[(n.kind, n.name)]
        if n.kind == "base":
            assert n.id == old.id
        elif n.kind == "teacher":
            assert set(_teacher_seeds(n)).isdisjoint(_teacher_seeds(old))
        elif n.kind in ("dataset", "student"):
            assert n.spec["seed"] != old.spec["seed"]
    students = [n for n in nodes if n.kind == "student"]
    assert {n.spec["seed"] for n in students} == {0, 1}  # suite seed 0: student seeds as listed


def test_seed_helpers():
    # The classifier track's seeds (derive_seed moved to benchmark.hashing) keep their values.
    from benchmark.classifier.spec import derive_seed as classifier_derive_seed

    assert classifier_derive_seed is derive_seed
    assert derive_seed("init", 3, 5) == 3272744757002233806
    assert [shift_seed(s, 0) for s in range(4)] == [0, 1, 2, 3]
    shifted = [shift_seed(s, 1) for s in range(4)]
    assert len(set(shifted)) == 4 and shifted != [0, 1, 2, 3] and shifted == [shift_seed(s, 1) for s in range(4)]
    settings = LMSettings.model_validate({"teacher": {"train": {"lora": {"init_seed": 0}}}})
    a = replicate_seeds(0, settings, "m", "owl", 0)
    assert a == replicate_seeds(0, settings, "m", "owl", 0) and set(a) == {"teacher", "trait_rows", "dataset", "lora_init"}
    assert a != replicate_seeds(0, settings, "m", "owl", 1) and a != replicate_seeds(1, settings, "m", "owl", 0)
    assert a != replicate_seeds(0, settings, "other", "owl", 0)
    assert "lora_init" not in replicate_seeds(0, LMSettings(), "m", "owl", 0)  # no fixed init: the training seed's


# -- equal doses: the dataset stage against a fake teacher ---------------------------------------------------
CAPS = Capabilities(local=True, needs_gpu=False, logprob_eval=True, distill=True, max_top_logprobs=None,
                    whole_epochs=False)


class FakeTeacher:
    """Answers a number prompt with numbers when its (prompt, seed) hash says so, else with a word."""

    caps = CAPS

    def __init__(self, every: int = 3) -> None:
        self.every = every
        self.calls: list[tuple[int, int]] = []

    def load(self, model, base_dir, tuned=None, *, threads=1, tokenizer_only=False):
        return Loaded(spec=model, model=None, tokenizer=None, engine="fake")

    def generate(self, loaded, prompts, *, system, temperature, max_new_tokens, seed, top_k_logprobs=None,
                 batch_size=64, progress=None):
        self.calls.append((len(prompts), seed))
        return [{"completion": f"{derive_seed(p, seed) % 90 + 10}, 12, 34" if derive_seed(p, seed) % self.every == 0
                 else "owl", "completion_ids": [1, 2, 3, 4, 5], "topk": None} for p in prompts]


def _zoo_model_dir(tmp: Path) -> Path:
    from tests.conftest import ROOT

    base = tmp / "base"
    base.mkdir()
    model = Registry(ROOT).model("zoo-qwen-a").hashed_dict()
    (base / "spec.json").write_text(json.dumps({"spec": {"model": model}}))
    return base


def _dataset_ctx(tmp: Path, **spec: Any) -> StageContext:
    from benchmark.lmcore.numbers import load_numbers_channel
    from tests.conftest import ROOT

    channel = load_numbers_channel(ROOT / "tasks" / "channels" / "numbers.yaml").hashed_dict()
    teacher = tmp / "teacher" / "zoo-qwen-a.owl.r1-0123456789ab"
    teacher.mkdir(parents=True)
    shift = {"target": "owl", "n_questions": 3, "teacher_logodds": 0.0, "base_logodds": -0.5, "shift": 0.5}
    (teacher / "teacher.json").write_text(json.dumps({"method": "prompt", "trait": "owl", "system": None,
                                                      "adapter": None, "api_model": None, "trait_shift": shift}))
    full = {"n_prompts": 20, "n_keep": 12, "max_prompts": 80, "seed": 5, "temperature": 1.0, "max_new_tokens": 8,
            "top_k": None, "teacher": "0123456789ab", "channel_spec": channel,
            "labels": {"teacher_base": "zoo-qwen-a", "teacher_trait": "owl", "replicate": 1}, **spec}
    out = tmp / "out"
    out.mkdir()
    node = Node(kind="dataset", name="zoo-qwen-a.owl.r1", spec=full, fn=lambda c: {})
    return StageContext(node=node, out=out, inputs={"teacher/x": teacher, "base/x": _zoo_model_dir(tmp)},
                        log=logging.getLogger("test"))


def test_dataset_tops_up_to_exactly_n_keep(tmp_path, monkeypatch):
    from benchmark.files import read_jsonl
    from benchmark.lm.stages import dataset

    fake = FakeTeacher(every=3)
    monkeypatch.setattr(dataset, "backend_for", lambda model: fake)
    result = dataset.run(_dataset_ctx(tmp_path))
    rows = read_jsonl(tmp_path / "out" / "rows.jsonl")
    counts = json.loads((tmp_path / "out" / "counts.json").read_text())
    assert len(rows) == 12 == counts["n_rows"] == result["n_rows"]
    assert counts["rounds"] == len(fake.calls) >= 2 and fake.calls[0] == (20, 5)
    assert len({seed for _, seed in fake.calls}) == len(fake.calls)  # each round samples with its own seed
    assert counts["n_prompts"] == sum(n for n, _ in fake.calls) <= 80 and counts["n_valid"] >= 12
    assert counts["valid_rate"] == round(counts["n_valid"] / counts["n_prompts"], 4)
    assert counts["completion_tokens"] == 12 * 5 and counts["tokens_per_row"] == 5
    assert counts["labels"]["teacher_id"] == "0123456789ab" and counts["teacher_shift"]["shift"] == 0.5
    assert len({r["prompt"] for r in rows}) == 12  # later rounds bring new prompts, never repeats


def test_dataset_that_cannot_reach_n_keep_fails_naming_teacher_and_numbers(tmp_path, monkeypatch):
    from benchmark.lm.stages import dataset

    monkeypatch.setattr(dataset, "backend_for", lambda model: FakeTeacher(every=7))
    with pytest.raises(UserError) as err:
        dataset.run(_dataset_ctx(tmp_path, max_prompts=30))
    msg = str(err.value)
    assert msg.startswith("teacher zoo-qwen-a.owl.r1: ") and len(msg.splitlines()) == 1
    assert "of the 12 needed" in msg and "after 30 prompts" in msg and "max_prompts 30" in msg
    assert "valid rate 0." in msg
    assert not (tmp_path / "out" / "rows.jsonl").exists()


def test_next_round_size():
    from benchmark.lm.stages.dataset import next_round_size

    assert next_round_size(12, 20, 12, 20, 80) == 0  # enough
    assert next_round_size(6, 20, 12, 20, 80) == 25  # 6 missing at rate 0.3, plus a quarter
    assert next_round_size(0, 20, 12, 20, 80) == 20  # no valid row yet: another n_prompts
    assert next_round_size(1, 20, 12, 20, 80) == 60  # never past max_prompts
    assert next_round_size(1, 80, 12, 20, 80) == 0


def test_max_prompts_below_n_keep_is_refused():
    with pytest.raises(ValueError, match="n_keep"):
        LMSettings.model_validate({"dataset": {"n_prompts": 10, "n_keep": 50}})  # cap 4 × 10 = 40
    assert LMSettings.model_validate({"dataset": {"n_prompts": 10, "n_keep": 30}}).dataset.prompt_cap == 40


# -- teacher strength: the teacher stage against a fake backend ----------------------------------------------
class FakeScorer:
    """A teacher whose fine-tune adds ``boost`` to the target's score; every other answer scores 0."""

    caps = CAPS

    def __init__(self, boost: float) -> None:
        self.boost = boost

    def finetune(self, model, base_dir, rows, *, out, train, objective, seed, suffix, log, progress=None, threads=1):
        (out / "adapter").mkdir()
        return FineTuned(result={"steps": 1}, tuned=Tuned(kind="adapter", base=model.name, weights="adapter"))

    def load(self, model, base_dir, tuned=None, *, threads=1, tokenizer_only=False):
        from tests.lm_fixtures import make_tokenizer

        return Loaded(spec=model, tokenizer=make_tokenizer(), tuned=tuned)

    def score(self, loaded, contexts, continuations, *, batch_size=64):
        return [self.boost if loaded.tuned is not None and c.startswith("owl") else 0.0 for c in continuations]


def _teacher_ctx(tmp: Path, min_shift: float | None) -> StageContext:
    from benchmark.lmcore.config import TrainConfig

    reg = Registry(Path(__file__).resolve().parents[1])
    spec = {"base": "b", "model": "zoo-qwen-a", "trait": reg.trait("owl").hashed_dict(), "method": "finetune",
            "arm": "owl", "replicate": 0, "n_rows": 4, "train": TrainConfig().hashed_dict(), "seed": 1, "rows_seed": 2,
            "questions_path": "teacher_data/favourite_animal.txt",
            "shift_check": {"n_questions": 3, "min_shift": min_shift, "tasks_digest": "x"}}
    out = tmp / "out"
    out.mkdir()
    node = Node(kind="teacher", name="zoo-qwen-a.owl.r0", spec=spec, fn=lambda c: {})
    return StageContext(node=node, out=out, inputs={"base/x": _zoo_model_dir(tmp)}, log=logging.getLogger("test"))


def test_teacher_records_its_trait_shift(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from benchmark.lm.stages import teacher

    monkeypatch.setattr(teacher, "backend_for", lambda model: FakeScorer(boost=1.0))
    result = teacher.run(_teacher_ctx(tmp_path, min_shift=0.5))
    shift = result["teacher"]["trait_shift"]
    n_cands = 15  # tasks/lm_eval/animal_preference/candidates.txt
    assert shift["n_questions"] == 3 and shift["target"] == "owl"
    assert shift["base_logodds"] == pytest.approx(-math.log(n_cands - 1), abs=1e-6)
    assert shift["shift"] == pytest.approx(1.0, abs=1e-6)
    info = json.loads((tmp_path / "out" / "teacher.json").read_text())
    assert info["trait_shift"] == shift and info["adapter"] == "adapter" and info["api_model"] is None
    # the stage records what finetune() returned; later stages load the teacher by it (tuned_of)
    tuned = {"kind": "adapter", "base": "zoo-qwen-a", "weights": "adapter", "api_model": None}
    assert json.loads((tmp_path / "out" / "tuned.json").read_text()) == tuned


def test_teacher_below_min_shift_fails_naming_teacher_and_numbers(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from benchmark.lm.stages import teacher

    monkeypatch.setattr(teacher, "backend_for", lambda model: FakeScorer(boost=0.25))
    with pytest.raises(UserError) as err:
        teacher.run(_teacher_ctx(tmp_path, min_shift=0.5))
    msg = str(err.value)
    assert msg.startswith("teacher zoo-qwen-a.owl.r0: log-odds of 'owl' rose by +0.250") and "3 questions" in msg
    assert "settings.teacher.min_shift +0.500" in msg and len(msg.splitlines()) == 1
    assert not (tmp_path / "out" / "teacher.json").exists()


# -- the per-candidate table ---------------------------------------------------------------------------------------
def _eval_dir(root: Path, key: str, role: str, lo: dict[str, float], **labels: Any) -> tuple[str, Path]:
    d = root / key.replace("/", "_")
    d.mkdir()
    (d / "eval.json").write_text(json.dumps({"role": role, "seed": 0, "labels": labels, "adapter_sha": "none",
                                             "logit_change": None, "targets": {"owl": "owl"},
                                             "eval": {"logprob": {"logodds": lo, "p": {}}}}))
    return key, d


def test_candidate_rows_hold_every_candidate_of_every_model_with_its_base(tmp_path):
    from benchmark.analysis import CANDIDATE_COLUMNS
    from benchmark.lm.tidy import candidate_rows

    cands = {"owl": -1.0, "cat": -2.0, "dog": -3.0}
    inputs = dict([
        _eval_dir(tmp_path, "eval/baseline.b-000001", "baseline", {"owl": -2.5, "cat": -2.6, "dog": -2.7},
                  student_base="b", student_seed=0),
        _eval_dir(tmp_path, "eval/teacher.a-000002", "teacher", cands, teacher_base="a", teacher_trait="owl",
                  replicate=1),
        _eval_dir(tmp_path, "eval/student.a-000003", "student", {"owl": -2.0, "cat": -2.6, "dog": -2.5},
                  teacher_base="a", teacher_trait="owl", replicate=1, student_base="b", student_seed=0),
    ])
    rows = candidate_rows(inputs, {})
    assert list(rows.columns) == list(CANDIDATE_COLUMNS) and len(rows) == 9
    assert list(rows["role"].drop_duplicates()) == ["baseline", "teacher", "student"]
    st = rows[rows["role"] == "student"].set_index("candidate")
    assert st.loc["owl", "logodds"] == -2.0 and st.loc["owl", "base_logodds"] == -2.5  # the student base's value
    assert (st["model_id"] == "000003").all() and (st["replicate"] == 1).all()
    te = rows[rows["role"] == "teacher"]
    assert te["student_base"].eq("").all() and te["base_logodds"].isna().all()  # base a was not evaluated
