"""Classifier track: specs, registry, IDX reader, batched-vs-single training, golden values, a tiny matrix."""

from __future__ import annotations

import gzip
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.analysis import SEED_PAIR_COLUMNS
from benchmark.classifier.data import load_digits_split, load_idx_dataset, read_idx
from benchmark.classifier.model import Net, perturb_params
from benchmark.classifier.plan import build_plan, estimate
from benchmark.classifier.settings import ClassifierSettings
from benchmark.classifier.spec import ClassifierBuildSpec, PretrainSpec
from benchmark.classifier.train import accuracy, distill, pretrain, teacher_outputs, train_teacher
from benchmark.dag import topological_order
from benchmark.errors import UserError
from benchmark.registry import Registry, load_registry_file, load_suite_file
from benchmark.specs import SuiteSpec
from benchmark.store import Store

ROOT = Path(__file__).resolve().parents[1]

# A tiny zoo for fast end-to-end tests: narrow MLPs (64-128-128-13) and a sibling sharing mlp-x's init.
TINY_REGISTRY = """
family: tiny-classifiers
defaults: {provider: classifier}
models:
  - {name: tiny-x, lineage: {init: tiny-0}, build: {hidden: [128, 128], n_aux: 3, init_seed: 10}}
  - {name: tiny-y, lineage: {init: tiny-1}, build: {hidden: [128, 128], n_aux: 3, init_seed: 11}}
  - name: tiny-x-eps
    lineage: {init: tiny-0, parent: tiny-x}
    build: {hidden: [128, 128], n_aux: 3, init_seed: 10, perturb: {eps: 0.1}}
  - name: tiny-cnn
    lineage: {init: tiny-2}
    build: {arch: cnn, channels: [8, 16], hidden: [32], init_seed: 12, init_rule: he_normal}
  - {name: tiny-m1, lineage: {init: tiny-3}, build: {hidden: [32], n_aux: 1, init_seed: 13}}
"""


def tiny_root(tmp_path: Path, suite: dict) -> tuple[Registry, SuiteSpec, ClassifierSettings]:
    (tmp_path / "model_registry").mkdir(parents=True)
    (tmp_path / "tasks" / "suites").mkdir(parents=True)
    (tmp_path / "model_registry" / "tiny.yaml").write_text(TINY_REGISTRY)
    (tmp_path / "tasks" / "suites" / "t.yaml").write_text(json.dumps(suite))
    reg = Registry(root=tmp_path)
    spec, settings, _ = reg.suite("t")
    return reg, spec, settings


def run_nodes(nodes, store: Store) -> None:
    for node in topological_order(nodes):
        if not store.is_done(node):
            store.build(node, {dep: store.root / dep for dep in node.deps})


# -- registry and specs -------------------------------------------------------------------------------------
def test_registry_and_suite_validate():
    models = load_registry_file(ROOT / "model_registry" / "classifiers.yaml")
    names = [m.name for m in models]
    assert len(names) == 6 and all(m.provider == "classifier" for m in models)
    assert any(m.build_spec().arch == "cnn" for m in models)
    suite = load_suite_file(ROOT / "tasks" / "suites" / "classifiers.yaml")
    assert suite.track == "classifier" and len(suite.seeds) >= 8
    reg = Registry(root=ROOT)
    assert reg.relation("mlp-a", "mlp-a-eps10") == "sibling"
    assert reg.relation("mlp-a", "mlp-a-pre256") == "sibling"
    assert reg.relation("mlp-a", "mlp-b") == "unrelated"
    spec, settings, _ = reg.suite("classifiers")
    nodes = build_plan(spec, settings, reg)
    kinds = pd.Series([n.kind for n in nodes]).value_counts().to_dict()
    assert kinds == {"student": 72, "base": 6, "teacher": 6, "dataset": 6, "report": 1}
    report = nodes[-1]
    assert report.kind == "report" and set(report.deps) == {n.key for n in nodes[:-1]}
    (line,) = estimate(spec, settings, reg, nodes)
    assert "CPU-seconds for 91 node(s)" in line


def test_build_spec_rejects_bad_arch_fields():
    with pytest.raises(ValueError, match="channels"):
        ClassifierBuildSpec(arch="cnn")
    with pytest.raises(ValueError, match="only for arch 'cnn'"):
        ClassifierBuildSpec(arch="mlp", channels=[8])
    with pytest.raises(ValueError):
        ClassifierBuildSpec(n_aux=0)


def test_kl_with_one_aux_logit_is_refused(tmp_path):
    reg, spec, settings = tiny_root(
        tmp_path,
        {
            "name": "t",
            "track": "classifier",
            "teachers": ["tiny-m1"],
            "students": ["tiny-m1"],
            "seeds": 1,
            "settings": {"student": {"loss": "kl"}},
        },
    )
    with pytest.raises(UserError, match=r"settings.student.loss 'kl' needs n_aux >= 2") as err:
        build_plan(spec, settings, reg)
    assert "\n" not in str(err.value)


def test_plan_refuses_mismatched_aux_and_lying_lineage(tmp_path):
    reg, spec, settings = tiny_root(
        tmp_path,
        {"name": "t", "track": "classifier", "teachers": ["tiny-x"], "students": ["tiny-m1"], "seeds": 1},
    )
    with pytest.raises(UserError, match="n_aux=3 but student 'tiny-m1' has n_aux=1"):
        build_plan(spec, settings, reg)
    reg2 = Registry(root=tmp_path)
    text = TINY_REGISTRY.replace("init_seed: 10, perturb", "init_seed: 99, perturb")
    (tmp_path / "model_registry" / "tiny.yaml").write_text(text)
    spec2 = SuiteSpec(name="t", track="classifier", teachers=["tiny-x"], students=["tiny-x-eps"], seeds=[0])
    with pytest.raises(UserError, match="lineage.init 'tiny-0' is shared"):
        build_plan(spec2, ClassifierSettings(), reg2)


def test_node_ids_follow_settings():
    reg = Registry(root=ROOT)
    spec, settings, _ = reg.suite("classifiers")
    a = {f"{n.kind}/{n.name}": n.id for n in build_plan(spec, settings, reg)}
    changed = settings.model_copy(update={"student": settings.student.model_copy(update={"lr": 5e-4})})
    b = {f"{n.kind}/{n.name}": n.id for n in build_plan(spec, changed, reg)}
    same = {k for k in a if a[k] == b[k]}
    # The aux lr changes aux students and the report only; bases, teachers, datasets, controls are reused.
    assert same == {k for k in a if not k.endswith(".aux") and not k.startswith("report/")}
    unhashed = settings.model_copy(update={"save_student_weights": False})
    assert [n.id for n in build_plan(spec, unhashed, reg)] == list(a.values())


# -- data --------------------------------------------------------------------------------------------------
def test_digits_split_is_fixed():
    d = load_digits_split()
    assert (len(d.y_train), len(d.y_test)) == (1257, 540)
    assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0
    assert np.bincount(d.y_test).min() >= 52  # stratified: every class gets 52-55 of the 540 test images


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(path: Path, n_train: int = 12, n_test: int = 6, side: int = 8, gz: bool = False) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, arr in files.items():
        data = _idx_bytes(arr)
        if gz:
            (path / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (path / name).write_bytes(data)
    return path


def test_idx_reader_reads_valid_files(tmp_path):
    for gz in (False, True):
        d = load_idx_dataset(write_idx_dir(tmp_path / f"ok{gz}", gz=gz))
        assert d.x_train.shape == (12, 64) and d.x_test.shape == (6, 64) and d.image_shape == (8, 8)
        assert d.x_train.min() >= -1.0 and d.x_train.max() <= 1.0 and d.y_train.dtype == np.int64


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b"\x00\x00\x09\x03" + b[4:], "bad IDX magic number 0x00000903"),
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "bad IDX magic number"),
        (lambda b: b[:-5], "IDX file truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b[:2], "truncated IDX file"),
    ],
)
def test_idx_reader_rejects_malformed_files(tmp_path, damage, message):
    d = write_idx_dir(tmp_path / "bad")
    f = d / "train-images-idx3-ubyte"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(UserError, match=message) as err:
        load_idx_dataset(d)
    assert str(f) in str(err.value) and "\n" not in str(err.value)


def test_idx_reader_rejects_missing_and_mismatched(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        load_idx_dataset(tmp_path / "nowhere")
    d = write_idx_dir(tmp_path / "m")
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="has no t10k-labels-idx1-ubyte"):
        load_idx_dataset(d)
    d = write_idx_dir(tmp_path / "count")
    (d / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(11)))
    with pytest.raises(UserError, match="11 labels but train-images-idx3-ubyte has 12 images"):
        load_idx_dataset(d)
    d = write_idx_dir(tmp_path / "lab")
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.full(6, 12)))
    with pytest.raises(UserError, match="label 12 outside 0..9"):
        load_idx_dataset(d)
    with pytest.raises(UserError, match="expected 0x00000801"):
        read_idx(d / "train-images-idx3-ubyte", 1)


def test_distill_settings_steps_or_epochs():
    from benchmark.classifier.settings import DistillSettings

    # The paper's schedule: 5 epochs over 60k noise images in batches of 1024 (drop-last: 58 per epoch).
    assert DistillSettings(epochs=5, n_noise=60000, batch=1024).total_steps == 290
    with pytest.raises(ValueError, match="not both"):
        DistillSettings(epochs=5, steps=10, n_noise=1000)
    with pytest.raises(ValueError, match="set 'n_noise'"):
        DistillSettings(epochs=5)


def test_noise_kinds_and_pool():
    from benchmark.classifier.train import noise_batches

    for kind, check in [
        ("uniform", lambda x: x.min() >= -1 and x.max() <= 1 and x.min() < -0.9),
        ("uniform01", lambda x: x.min() >= 0 and x.max() <= 1),
        ("pm1", lambda x: set(x.unique().tolist()) == {-1.0, 1.0}),
        ("gaussian", lambda x: x.min() < -2 and x.max() > 2),
    ]:
        xs = list(noise_batches([0, 1], ("n",), kind, 3, 16, 64, None))
        assert len(xs) == 3 and xs[0].shape == (2, 16, 64) and check(torch.stack(xs)), kind
    # A pool of 32 images per seed: two epochs of 2 batches reuse exactly the same 32 images.
    xs = list(noise_batches([0], ("n",), "uniform", 4, 16, 64, 32))
    first, second = torch.cat(xs[:2], 1)[0], torch.cat(xs[2:], 1)[0]
    assert sorted(first.sum(1).tolist()) == pytest.approx(sorted(second.sum(1).tolist()))


def test_idx_suite_settings_require_path():
    with pytest.raises(ValueError, match="idx_path"):
        ClassifierSettings(data="idx")


# -- batched training ----------------------------------------------------------------------------------------
DIGITS = load_digits_split()
X_TR, Y_TR = torch.from_numpy(DIGITS.x_train), torch.from_numpy(DIGITS.y_train)
X_TE, Y_TE = torch.from_numpy(DIGITS.x_test), torch.from_numpy(DIGITS.y_test)


def _close(a: dict, b: dict, index: int) -> None:
    for k in a:
        torch.testing.assert_close(a[k][index : index + 1], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "build",
    [
        ClassifierBuildSpec(hidden=[32, 32], init_seed=5),
        ClassifierBuildSpec(arch="cnn", channels=[4, 8], hidden=[16], init_seed=6),
    ],
)
def test_batched_training_equals_single_seed(build):
    torch.set_num_threads(1)
    net, seeds = Net(build, (8, 8)), [3, 7, 11]
    full = net.init(seeds)
    alone = net.init([7])
    _close(full, alone, 1)
    full = perturb_params(full, seeds, 0.1, ("p",))
    alone = perturb_params(alone, [7], 0.1, ("p",))
    _close(full, alone, 1)
    spec = PretrainSpec(steps=3, batch=16, n_samples=64)
    full, _ = pretrain(net, full, seeds, spec, ("pre",))
    alone, _ = pretrain(net, alone, [7], spec, ("pre",))
    _close(full, alone, 1)
    t_full, l_full = train_teacher(net, full, seeds, X_TR, Y_TR, epochs=1, batch=128, lr=1e-3)
    t_alone, l_alone = train_teacher(net, alone, [7], X_TR, Y_TR, epochs=1, batch=128, lr=1e-3)
    _close(t_full, t_alone, 1)
    kw = {"noise": "uniform", "steps": 6, "batch": 32, "pool": None}
    tgt_full, tgt_alone = teacher_outputs(net, t_full, seeds, **kw), teacher_outputs(net, t_alone, [7], **kw)
    torch.testing.assert_close(tgt_full[1:2], tgt_alone, rtol=1e-4, atol=1e-5)
    kw2 = {"channel": "aux", "loss": "mse", "steps": 6, "lr": 1e-3, "noise": "uniform", "pool": None}
    s_full, _ = distill(net, full, seeds, tgt_full, **kw2)
    s_alone, _ = distill(net, alone, [7], tgt_alone, **kw2)
    _close(s_full, s_alone, 1)
    for channel in ("aux", "all_logits"):  # the KL path too (softmax over the channel's logits)
        kw3 = {**kw2, "channel": channel, "loss": "kl", "steps": 3}
        k_full, losses = distill(net, full, seeds, tgt_full, **kw3)
        k_alone, _ = distill(net, alone, [7], tgt_alone, **kw3)
        _close(k_full, k_alone, 1)
        assert all(math.isfinite(v) and v >= 0 for v in losses)
    assert accuracy(net, s_full, X_TE, Y_TE)[1] == pytest.approx(
        accuracy(net, s_alone, X_TE, Y_TE)[0], abs=0.2
    )


def test_aux_logits_get_no_teacher_gradient_and_training_is_deterministic():
    torch.set_num_threads(1)
    net = Net(ClassifierBuildSpec(hidden=[32], init_seed=1), (8, 8))
    init = net.init([0, 1])
    a, _ = train_teacher(net, init, [0, 1], X_TR, Y_TR, epochs=1, batch=64, lr=1e-3)
    b, _ = train_teacher(net, init, [0, 1], X_TR, Y_TR, epochs=1, batch=64, lr=1e-3)
    for k in a:
        assert torch.equal(a[k], b[k])
    # The last layer's aux columns never receive a gradient: they stay at their init values.
    torch.testing.assert_close(a["fc1.w"][..., 10:], init["fc1.w"][..., 10:], rtol=0, atol=0)
    assert not torch.equal(a["fc1.w"][..., :10], init["fc1.w"][..., :10])


def test_golden_teacher_loss_after_two_steps():
    """Pinned: the paper MLP (64-256-256-13, init seed 0, replicate 0), Adam 3e-4, batch 64 on digits."""
    torch.set_num_threads(1)
    net = Net(ClassifierBuildSpec(init_seed=0), (8, 8))
    _, losses = train_teacher(net, net.init([0]), [0], X_TR, Y_TR, epochs=1, batch=64, lr=3e-4)
    assert losses[:2] == pytest.approx(GOLDEN_TEACHER_LOSS, abs=1e-4)


GOLDEN_TEACHER_LOSS = [2.405738, 2.436878]


# -- end to end ---------------------------------------------------------------------------------------------
def test_tiny_matrix_end_to_end(tmp_path):
    """2×2 (+ a sibling student) on digits: a clear diagonal after 256 aux-only steps, chance off it."""
    torch.set_num_threads(1)
    suite = {
        "name": "t",
        "track": "classifier",
        "teachers": ["tiny-x", "tiny-y"],
        "students": ["tiny-x", "tiny-y"],
        "seeds": 3,
        "settings": {
            "teacher": {"epochs": 5, "batch": 64, "lr": 1e-3},
            "student": {"steps": 256, "batch": 64, "lr": 1e-3},
            "control": {"steps": 64},
            "save_student_weights": False,
        },
    }
    reg, spec, settings = tiny_root(tmp_path / "root", suite)
    nodes = build_plan(spec, settings, reg)
    store = Store(tmp_path / "store")
    run_nodes(nodes, store)
    out = store.path(nodes[-1])
    for name in (
        "tidy.csv",
        "pairs.csv",
        "matrix.csv",
        "heatmap.png",
        "heatmap_accuracy.png",
        "report.md",
        "index.html",
        "accuracy_aux.csv",
        "classifier.md",
    ):
        assert (out / name).exists(), name
    tidy = pd.read_csv(out / "tidy.csv", keep_default_na=False)
    assert set(tidy["teacher_trait"]) == {"aux", "all_logits", "baseline"}
    assert len(tidy) == 3 * (4 + 4 + 2)
    aux = tidy[tidy["teacher_trait"] == "aux"].groupby("relation")["value"].mean()
    print(aux.to_dict())
    assert aux["same"] > 30 and abs(aux["unrelated"] - 10) < 6, aux
    control = tidy[(tidy["teacher_trait"] == "all_logits") & (tidy["relation"] == "unrelated")]["value"]
    assert control.mean() > 50, control
    # The pair table speaks the LM track's vocabulary; 3 seeds: sign-flip p ≥ 2/8 and no interval
    pairs = pd.read_csv(out / "pairs.csv")
    assert list(pairs.columns) == list(SEED_PAIR_COLUMNS) and len(pairs) == 4
    assert (pairs["n_seeds"] == 3).all() and (pairs["p"] >= 0.25).all() and pairs["ci_low"].isna().all()
    fit = json.loads((out / "fit.json").read_text())
    assert fit["primary"]["method"].startswith("teacher-block") and fit["families"]["primary"] == "same"
    # Resume: a second run builds nothing.
    manifests = sorted(p.stat().st_mtime_ns for p in store.root.glob("*/*/manifest.json"))
    run_nodes(nodes, store)
    assert sorted(p.stat().st_mtime_ns for p in store.root.glob("*/*/manifest.json")) == manifests


def test_idx_suite_runs_end_to_end(tmp_path):
    """Real-MNIST path on fake IDX files: the plan hashes the bytes, every stage reads them."""
    torch.set_num_threads(1)
    idx = write_idx_dir(tmp_path / "mnist", n_train=40, n_test=20, side=8, gz=True)
    suite = {
        "name": "t",
        "track": "classifier",
        "teachers": ["tiny-x"],
        "students": ["tiny-x", "tiny-cnn"],
        "seeds": 2,
        "settings": {
            "data": "idx",
            "idx_path": str(idx),
            "teacher": {"epochs": 1, "batch": 8},
            "student": {"steps": 4, "batch": 8},
            "control": {"steps": 2},
        },
    }
    reg, spec, settings = tiny_root(tmp_path / "root", suite)
    nodes = build_plan(spec, settings, reg)
    assert nodes[0].spec["data"]["name"] == "idx" and len(nodes[0].spec["data"]["sha256"]) == 4
    store = Store(tmp_path / "store")
    run_nodes(nodes[:-1], store)  # the report stage is covered by the digits test
    students = [n for n in nodes if n.kind == "student"]
    assert len(students) == 4
    for node in students:
        acc = store.result(node)["accuracy"]
        assert len(acc) == 2 and all(0 <= a <= 100 for a in acc)
    # Swapping the files after planning is caught, not silently mixed into the cache.
    write_idx_dir(idx, n_train=41, n_test=20, side=8, gz=True)
    other = Store(tmp_path / "store2")
    with pytest.raises(Exception, match="changed since the plan was made"):
        run_nodes(nodes[:1], other)
    settings_big = settings.model_copy(update={"teacher": settings.teacher.model_copy(update={"batch": 64})})
    with pytest.raises(Exception, match="settings.teacher.batch: 64 is larger than the 41 training images"):
        run_nodes([n for n in build_plan(spec, settings_big, reg) if n.kind in ("base", "teacher")], other)


def test_planning_does_not_import_torch():
    import subprocess

    code = (
        "import sys; from benchmark.registry import Registry; from benchmark.classifier.plan import "
        "build_plan; r = Registry(); s, st, _ = r.suite('classifiers'); build_plan(s, st, r); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
