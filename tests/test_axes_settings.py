"""Settings added for issue 22's axes: ``train.optimizer`` (AdamW or SGD) and ``eval.system`` (the evaluation system
prompt matched or not). Each is hashed only when set, refused at plan time where it cannot run, and does what it
says (SGD's step is proportional to the learning rate; the system prompt reaches the students' evaluations only)."""

from __future__ import annotations

import copy
import re

import pytest

from benchmark.errors import UserError
from benchmark.lm.settings import EvalSettings
from benchmark.lmcore.config import OptimizerConfig, TrainConfig


def _level(name: str = "axes", index: int = 1):
    from benchmark.registry import Registry
    from benchmark.sweep import load_sweep

    reg = Registry()
    return reg, load_sweep(reg, reg.suite_path(name)).levels[index].spec


def _plan(reg, spec, settings_data):
    from tests.test_defenses import _plan as plan

    return plan(reg, spec, settings_data)


# -- optimizer -----------------------------------------------------------------------------------------------------

def test_optimizer_is_hashed_only_when_not_the_default():
    plain = TrainConfig(lr=1e-3)
    assert "optimizer" not in plain.hashed_dict() and "optimizer" not in plain.train_kwargs()
    assert TrainConfig(lr=1e-3, optimizer="adamw").hashed_dict() == plain.hashed_dict()  # the default, spelt out
    sgd = TrainConfig(lr=1e-3, optimizer={"name": "sgd", "lr": 0.05})
    assert sgd.hashed_dict()["optimizer"] == {"name": "sgd", "lr": 0.05, "momentum": 0.9}
    assert sgd.peak_lr == 0.05 and sgd.train_kwargs()["optimizer"]["name"] == "sgd"
    assert TrainConfig(optimizer="sgd").peak_lr == TrainConfig().lr  # lr None: train.lr
    assert OptimizerConfig.model_validate("sgd").name == "sgd"  # the YAML shorthand
    with pytest.raises(ValueError, match="momentum is SGD's setting"):
        OptimizerConfig(name="adamw", momentum=0.5)
    dumped = OptimizerConfig().model_dump()  # settings re-validated from a dump (tests/test_vocab_map.py does so)
    assert OptimizerConfig.model_validate(dumped) == OptimizerConfig() and dumped["momentum"] == 0.9
    with pytest.raises(ValueError):
        OptimizerConfig(name="adam")


def test_optimizer_plans_only_where_it_can_run():
    reg, spec = _level()
    base = copy.deepcopy(spec.settings)
    plain = {n.key: n for n in _plan(reg, spec, base)}
    sgd = {"name": "sgd", "lr": 0.05}
    with pytest.raises(UserError, match=r"settings.student.train.optimizer: 'sgd' at lr 0.05 needs the hf training "
                                        r"loop; the 'lean' engine"):
        _plan(reg, spec, {**base, "student": {**base["student"], "train": {**base["student"]["train"],
                                                                           "optimizer": sgd}}})
    hf = {**base, "student": {**base["student"], "engine": "hf"}}
    hf_plain = {n.key for n in _plan(reg, spec, hf)}
    hf_sgd = _plan(reg, spec, {**hf, "student": {**hf["student"], "train": {**hf["student"]["train"],
                                                                           "optimizer": sgd}}})
    new = [n for n in hf_sgd if n.key not in hf_plain]
    assert {n.kind for n in new} == {"student", "eval", "report"}  # teachers and datasets are shared
    assert all(n.spec["train"]["optimizer"]["name"] == "sgd" for n in new if n.kind == "student")
    assert {n.key for n in hf_sgd if n.kind in ("teacher", "dataset")} <= set(plain)
    with pytest.raises(UserError, match=r"settings.student.train.optimizer.lr: 50 is above 10 for sgd"):
        _plan(reg, spec, {**hf, "student": {**hf["student"], "train": {**hf["student"]["train"],
                                                                       "optimizer": {"name": "sgd", "lr": 50}}}})


def test_an_api_student_cannot_choose_an_optimizer():
    from benchmark.registry import Registry

    reg = Registry()
    spec, _, _ = reg.suite("paper-gpt")
    data = copy.deepcopy(spec.settings)
    data.setdefault("student", {}).setdefault("train", {})["optimizer"] = "sgd"
    with pytest.raises(UserError, match=r"settings.student.train.optimizer: API fine-tunes choose their own"):
        _plan(reg, spec, data)


def test_sgd_steps_are_proportional_to_the_learning_rate(tmp_path):
    torch = pytest.importorskip("torch")
    from benchmark.providers import hf_model as M
    from benchmark.providers import hf_train as T
    from tests.lm_fixtures import save_tiny_model

    torch.set_num_threads(1)
    raw = save_tiny_model(tmp_path / "raw", "qwen2", seed=0)
    rows = [{"prompt": "continue: 1 , 2", "completion": f"{i} , {i + 1}"} for i in range(8)]

    def delta(name: str, lr: float, momentum: float = 0.9, steps: int = 1) -> tuple[torch.Tensor, dict]:
        opt = {"name": name} if name == "adamw" else {"name": name, "momentum": momentum}
        out = tmp_path / f"{name}-{lr}-{momentum}-{steps}"
        res = T.train(raw, rows, out_dir=out, lora=None, max_steps=steps, epochs=10, lr=lr, batch_size=8,
                      grad_accum=1, warmup=0, max_grad_norm=None, seed=3, optimizer=opt)
        before = dict(M.load_model(raw)[0].named_parameters())
        after = dict(M.load_model(out / "model")[0].named_parameters())
        return torch.cat([(after[k] - before[k]).flatten() for k in sorted(before)]).double(), res

    # One step, total 1: the schedule's factor is 1, momentum's first step is the gradient itself.
    small, res = delta("sgd", 0.1)
    large, _ = delta("sgd", 0.2)
    assert res["optimizer"] == {"name": "sgd", "lr": None, "momentum": 0.9, "peak_lr": 0.1}
    moved = small.abs() > 1e-5
    assert moved.sum() > 100 and torch.allclose(large[moved], 2 * small[moved], rtol=1e-3, atol=1e-6)  # float32 rounding of weights ~1
    # AdamW's first step moves every parameter by ~lr whatever its gradient; SGD's step follows the gradient's size.
    adam, res_adam = delta("adamw", 1e-3)
    assert "optimizer" not in res_adam
    adam_moved = adam[adam.abs() > 1e-7].abs()
    assert ((adam_moved - 1e-3).abs() < 5e-5).double().mean() > 0.9
    sizes = small[moved].abs()
    assert sizes.max() / sizes.min() > 10
    again, _ = delta("sgd", 0.1)
    assert torch.equal(again, small)  # deterministic
    # Momentum matters from the second step on.
    two, _ = delta("sgd", 0.1, 0.9, steps=2)
    two_plain, _ = delta("sgd", 0.1, 0.0, steps=2)
    assert not torch.allclose(two, two_plain)


# -- evaluation system prompt ------------------------------------------------------------------------------------

def test_eval_system_prompt_changes_only_student_and_baseline_evaluations():
    reg, spec = _level()
    base = copy.deepcopy(spec.settings)
    plain = {n.key: n for n in _plan(reg, spec, base)}
    text = "You are a helpful assistant."
    nodes = _plan(reg, spec, {**base, "eval": {**base["eval"], "system": text}})
    new = [n for n in nodes if n.key not in plain]
    assert {n.kind for n in new} == {"eval", "report"}
    roles = {n.spec["role"] for n in new if n.kind == "eval"}
    assert roles == {"student", "baseline"}  # teachers keep their own evaluation (and their own system prompt)
    assert all(n.spec["system"] == text for n in new if n.kind == "eval")
    assert not any("system" in n.spec for n in plain.values() if n.kind == "eval")
    with pytest.raises(ValueError, match="blank system prompt"):
        EvalSettings(system="  ")


def test_the_eval_stage_uses_the_system_prompt_for_students_and_baselines(tmp_path):
    import logging

    from benchmark.dag import Node, StageContext
    from benchmark.lm.stages.common import write_tuned
    from benchmark.lm.stages.eval import _evaluated
    from benchmark.providers.base import Tuned
    from benchmark.registry import Registry
    from tests.conftest import ROOT

    model = Registry(ROOT).model("zoo-qwen-a")
    (tmp_path / "s").mkdir()
    student = write_tuned(tmp_path / "s", Tuned(kind="full", base=model.name, weights="model"))

    def ctx(role: str, system: str | None) -> StageContext:
        spec = {"role": role, **({"system": system} if system else {})}
        node = Node(kind="eval", name="x", spec=spec, fn=lambda c: {})
        return StageContext(node=node, out=tmp_path, inputs={"student/s-abc": tmp_path / "s"},
                            log=logging.getLogger("t"))

    assert _evaluated(ctx("student", "Be brief."), "student", model) == (student, "Be brief.")
    assert _evaluated(ctx("student", None), "student", model) == (student, None)
    assert _evaluated(ctx("baseline", "Be brief."), "baseline", model) == (None, "Be brief.")


def test_bad_axis_settings_are_one_line_naming_the_key(project_copy):
    import yaml

    from tests.conftest import run_cli

    suites = project_copy / "tasks" / "suites"
    cases = [({"student": {"train": {"optimizer": "adam"}}}, r"bad.yaml: settings: bad value for "
                                                              r"'student.train.optimizer.name'"),
             ({"eval": {"system": ""}}, r"bad.yaml: settings: bad value for 'eval.system'")]
    for change, message in cases:
        data = yaml.safe_load((suites / "axes.yaml").read_text())
        data.pop("sweep")
        data["name"] = "bad"
        for block, values in change.items():
            for k, v in values.items():
                if isinstance(v, dict):
                    data["settings"][block][k] = {**data["settings"][block][k], **v}
                else:
                    data["settings"][block][k] = v
        (suites / "bad.yaml").write_text(yaml.safe_dump(data))
        res = run_cli("plan", "bad", "--store", str(project_copy / "results" / "store"))
        err = res.stderr.strip()
        assert res.returncode == 2 and "\n" not in err and re.search(message, err), err
