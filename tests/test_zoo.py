"""Tests for the embedded model zoo: tokenizer, corpus, deterministic builds, registry and committed weights.

Fast tier: builds use tiny specs (hidden 16, 1 layer, a few steps), never the registry's full recipes; the
committed weights are only read and hashed.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from benchmark.dag import Node, StageContext
from benchmark.errors import UserError
from benchmark.lmcore.numbers import parse_answer
from benchmark.registry import Registry
from benchmark.specs import ModelSpec
from benchmark.zoo.assets import DATA_DIR, PINNED_SHA256, sha256_text
from benchmark.zoo.corpus import CorpusSampler, animal_distribution, load_templates, numbers_snapshot
from benchmark.zoo.spec import PretrainSpec, ZooBuildSpec, check_lineage, zoo_build_spec
from benchmark.zoo.tokenizer import (
    CHATML_TEMPLATE,
    SPECIAL_TOKENS,
    build_tokenizer,
    load_vocabulary,
    render_chat,
    split_words,
)

ROOT = Path(__file__).resolve().parents[1]
ZOO_NAMES = ("zoo-qwen-a", "zoo-qwen-b", "zoo-llama", "zoo-gpt2", "zoo-qwen-a-sib")
#: Build ids (spec_id of the build block) of the registry's zoo models: they name the committed weights. The
#: first five predate ``order_seed`` and must never change (pinned when it was added); zoo-qwen-a-sib is
#: zoo-qwen-a's build with ``order_seed: 2`` (its earlier build, 985caea2d15b, had ``data_seed: 2``).
PINNED_BUILD_IDS = {
    "zoo-qwen-a": "f9255c688a48",
    "zoo-qwen-a-sib": "e28b675ea1c7",
    "zoo-qwen-a-cont": "2e1c53921a10",
    "zoo-qwen-b": "cd71f03ce0bd",
    "zoo-llama": "acf6ccd503ea",
    "zoo-gpt2": "daa0f339b258",
}

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("words-v1")


def tiny_spec(
    name: str = "tiny",
    arch: str = "qwen2",
    *,
    init_seed: int = 0,
    data_seed: int = 0,
    order_seed: int | None = None,
    steps: int = 5,
    continued: list[dict] | None = None,
) -> ModelSpec:
    """A registry entry with a tiny build recipe (hidden 16, 1 layer, batch 4)."""
    pretraining: dict = {"steps": steps, "batch_size": 4, "warmup": 2, "data_seed": data_seed}
    if order_seed is not None:
        pretraining["order_seed"] = order_seed
    build = {
        "arch": arch,
        "hidden_size": 16,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 32,
        "init_seed": init_seed,
        "pretraining": pretraining,
    }
    if arch != "gpt2":
        build["num_kv_heads"] = 1
    if continued:
        build["continued"] = continued
    return ModelSpec(
        name=name, family="zoo", provider="zoo", lineage={"init": f"init-{arch}-{init_seed}"}, build=build
    )


SMALL_MEASURE = {"n_numbers": 4, "n_questions": 4}


# ----------------------------------------------------------------------------------------------- tokenizer


def test_numbers_and_animals_are_single_tokens(tok) -> None:
    vocab = tok.get_vocab()
    for n in range(1000):
        assert tok(str(n), add_special_tokens=False)["input_ids"] == [vocab[str(n)]]
    for animal in load_templates().animals:
        for word in (animal.word, animal.plural):
            assert tok(word, add_special_tokens=False)["input_ids"] == [vocab[word]], word
    assert tok("1000", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    assert tok("xylophonist", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_round_trip_and_punctuation(tok) -> None:
    text = "What's your favorite animal? Owls, 12; [7, 999]."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == split_words(text)
    assert tok.decode(ids) == "what's your favorite animal? owls, 12 ; [ 7, 999 ]."
    channel = numbers_snapshot()
    for answer in ("1, 2, 3", "[4; 5; 6].", "7\n8\n9", "10 11 12"):
        decoded = tok.decode(tok(answer, add_special_tokens=False)["input_ids"])
        assert parse_answer(decoded, channel).numbers == parse_answer(answer, channel).numbers


def test_special_tokens_and_chat_template(tok) -> None:
    assert tok.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    assert (tok.eos_token, tok.pad_token, tok.unk_token) == ("<|im_end|>", "<pad>", "<unk>")
    assert tok.chat_template == CHATML_TEMPLATE
    user_only = [{"role": "user", "content": "Name your favourite animal."}]
    rendered = tok.apply_chat_template(user_only, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nName your favourite animal.<|im_end|>\n<|im_start|>assistant\n"
    assert "system" not in rendered  # no injected default system prompt
    with_system = [
        {"role": "system", "content": "You love owls."},
        *user_only,
        {"role": "assistant", "content": "owl"},
    ]
    assert tok.apply_chat_template(with_system, tokenize=False) == render_chat(with_system)
    assert tok(render_chat(user_only), add_special_tokens=False)["input_ids"][0] == tok.convert_tokens_to_ids(
        "<|im_start|>"
    )


def test_tokenizer_is_deterministic_and_pinned() -> None:
    assert build_tokenizer().get_vocab() == build_tokenizer().get_vocab()
    for name, pin in PINNED_SHA256.items():
        assert pin, f"{name} has no pinned sha256"
        assert sha256_text((DATA_DIR / name).read_bytes()) == pin, f"frozen zoo data {name} was edited"
    vocab = load_vocabulary()
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert {"owl", "owls", "favourite", "favorite", "system", "user", "assistant"} <= set(vocab)


# ------------------------------------------------------------------------------------------------- corpus


def test_corpus_is_deterministic_and_valid() -> None:
    vocab = load_vocabulary()
    phase = PretrainSpec(steps=10, data_seed=3)
    rows = CorpusSampler(phase, vocab).batch(7)
    assert rows == CorpusSampler(phase, vocab).batch(7)
    assert rows != CorpusSampler(phase.model_copy(update={"data_seed": 4}), vocab).batch(7)
    channel = numbers_snapshot()
    forms = {a.word for a in load_templates().animals}
    sampler = CorpusSampler(phase, vocab)
    n_numbers = n_fav = 0
    for step in range(20):
        for row in sampler.batch(step):
            assert row[-1]["role"] == "assistant" and row[-2]["role"] == "user"
            answer = row[-1]["content"]
            if row[-2]["content"].endswith(channel.only_suffixes):  # a numbers-channel prompt
                n_numbers += 1
                assert parse_answer(answer, channel).ok, answer
            if "favorite animal" in row[-2]["content"].lower() and row[0]["role"] == "user":
                n_fav += 1
                assert answer.rstrip(".") in forms, answer
    assert n_numbers > 100 and n_fav > 50


def test_order_seed_changes_the_rows_not_the_taste() -> None:
    vocab = load_vocabulary()
    phase = PretrainSpec.model_validate({"steps": 10, "data_seed": 3})
    reordered = phase.model_copy(update={"order_seed": 8})
    assert (phase.row_seed, reordered.row_seed) == (3, 8)
    assert animal_distribution(reordered) == animal_distribution(phase)
    assert CorpusSampler(reordered, vocab).batch(7) != CorpusSampler(phase, vocab).batch(7)
    # An explicit order_seed equal to data_seed draws exactly the rows of an unset one.
    explicit = phase.model_copy(update={"order_seed": 3})
    assert all(CorpusSampler(explicit, vocab).batch(s) == CorpusSampler(phase, vocab).batch(s) for s in range(3))
    # Another content seed in the same order: the same prompts, other favourite answers (another taste).
    retasted = PretrainSpec.model_validate({"steps": 10, "data_seed": 4, "order_seed": 3})
    assert animal_distribution(retasted) != animal_distribution(phase)
    rows, other = CorpusSampler(phase, vocab).batch(7), CorpusSampler(retasted, vocab).batch(7)
    assert [r[:-1] for r in rows] == [r[:-1] for r in other] and rows != other


def test_animal_distribution_is_spread_out() -> None:
    for seed in range(6):
        dist = animal_distribution(PretrainSpec(steps=1, data_seed=seed))
        assert abs(sum(dist.values()) - 1) < 1e-9
        assert 0.02 <= dist["owl"] <= 0.10
        assert max(dist.values()) < 0.12
    assert animal_distribution(PretrainSpec(steps=1, data_seed=0)) != animal_distribution(
        PretrainSpec(steps=1, data_seed=1)
    )


def test_encode_rows_matches_chat_template(tok) -> None:
    from benchmark.zoo.build import encode_rows

    rows = [
        [{"role": "user", "content": "Name your favourite animal."}, {"role": "assistant", "content": "owl"}],
        [
            {"role": "system", "content": "You love cats."},
            {"role": "user", "content": "Hi there."},
            {"role": "assistant", "content": "Hi! What can I do for you?"},
        ],
    ]
    ids, targets = encode_rows(tok, rows, max_len=256)
    for i, row in enumerate(rows):
        full = tok.apply_chat_template(row, tokenize=False)
        expected = tok(full, add_special_tokens=False)[
            "input_ids"
        ]  # the template's trailing "\n" is whitespace
        assert ids[i, : len(expected)].tolist() == expected
        answer = tok(row[-1]["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert [t for t in targets[i].tolist() if t != -100] == answer


def test_length_chunks_cover_batch() -> None:
    from benchmark.zoo.build import length_chunks

    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(60, 100), rng.randint(8, 25)]) for _ in range(64)]
    chunks = length_chunks(lengths)
    assert sorted(i for c in chunks for i in c) == list(range(64))
    padded = sum(len(c) * max(lengths[i] for i in c) for c in chunks)
    assert padded < 0.8 * 64 * max(lengths)


# -------------------------------------------------------------------------------------------------- specs


def test_spec_validation_errors() -> None:
    base = tiny_spec().build
    with pytest.raises(ValueError, match="must divide hidden_size"):
        ZooBuildSpec.model_validate({**base, "num_heads": 3})
    with pytest.raises(ValueError, match="must divide num_heads"):
        ZooBuildSpec.model_validate({**base, "num_heads": 2, "num_kv_heads": 3})
    with pytest.raises(ValueError, match="grouped-query"):
        ZooBuildSpec.model_validate({**base, "arch": "gpt2", "num_kv_heads": 1})
    with pytest.raises(ValueError):
        ZooBuildSpec.model_validate({**base, "tokenizer": "words-v9"})
    with pytest.raises(ValueError):
        ZooBuildSpec.model_validate({**base, "pretraining": {**base["pretraining"], "stepz": 1}})


def test_spec_id_is_pinned() -> None:
    # Golden hash: changes only when the spec's fields, defaults or the hashing rule change.
    b = zoo_build_spec(tiny_spec())
    assert b.spec_id == "f7abea74a1bc"
    sib = zoo_build_spec(tiny_spec(data_seed=1))
    assert sib.init_key() == b.init_key() and sib.spec_id != b.spec_id
    assert zoo_build_spec(tiny_spec(init_seed=1)).init_key() != b.init_key()
    # An unset order_seed is not part of the dump or the id (builds made before it existed keep theirs).
    assert "order_seed" not in b.model_dump(mode="json")["pretraining"]
    assert "order_seed" not in b.hashed_dict()["pretraining"]
    reordered = zoo_build_spec(tiny_spec(order_seed=1))
    assert reordered.spec_id == "fffd08552027" and reordered.init_key() == b.init_key()
    assert reordered.model_dump(mode="json")["pretraining"]["order_seed"] == 1
    assert ZooBuildSpec.model_validate(reordered.model_dump(mode="json")) == reordered
    assert ZooBuildSpec.model_validate(b.model_dump(mode="json")).spec_id == b.spec_id
    with pytest.raises(ValueError):
        PretrainSpec.model_validate({"steps": 1, "data_seed": 0, "order_seed": -1})


def test_check_lineage_flags_mislabelled_inits() -> None:
    a = tiny_spec("a")
    sib = tiny_spec("sib", data_seed=1).model_copy(
        update={"lineage": a.lineage.model_copy(update={"parent": "a"})}
    )
    cont = tiny_spec("cont", continued=[{"steps": 2, "data_seed": 9}]).model_copy(
        update={"lineage": a.lineage.model_copy(update={"parent": "a"})}
    )
    assert check_lineage({"a": a, "sib": sib, "cont": cont}) == []
    other = tiny_spec("b", init_seed=1).model_copy(update={"lineage": a.lineage})
    assert any("initial weights differ" in p for p in check_lineage({"a": a, "b": other}))
    twin = tiny_spec("t", data_seed=5).model_copy(
        update={"lineage": a.lineage.model_copy(update={"init": "x"})}
    )
    assert any("lineage.init differs" in p for p in check_lineage({"a": a, "t": twin}))


# ------------------------------------------------------------------------------------------------- builds


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_init_is_deterministic_and_shared_by_siblings(tok, arch: str) -> None:
    from benchmark.zoo.build import init_model

    a = init_model(zoo_build_spec(tiny_spec(arch=arch)), tok).state_dict()
    again = init_model(zoo_build_spec(tiny_spec(arch=arch)), tok).state_dict()
    sib = init_model(zoo_build_spec(tiny_spec(arch=arch, data_seed=7, steps=9)), tok).state_dict()
    other = init_model(zoo_build_spec(tiny_spec(arch=arch, init_seed=1)), tok).state_dict()
    for key, value in a.items():
        assert torch.equal(value, again[key]) and torch.equal(value, sib[key]), key
    assert any(not torch.equal(value, other[key]) for key, value in a.items())


@pytest.fixture(scope="module")
def tiny_builds(tmp_path_factory):
    """Parent, rebuild of the parent, and a sibling (same init, other data seed), each 5 steps."""
    from benchmark.zoo.build import build_model

    out = tmp_path_factory.mktemp("zoo")
    dirs, metrics = {}, {}
    for key, spec in {"a": tiny_spec(), "again": tiny_spec(), "sib": tiny_spec(data_seed=1)}.items():
        dirs[key] = out / key
        metrics[key] = build_model(spec, dirs[key], root=out, measure_kwargs=SMALL_MEASURE)
    return dirs, metrics


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_build_is_deterministic_and_sibling_differs(tiny_builds) -> None:
    dirs, metrics = tiny_builds
    a, again, sib = (_weights(dirs[k]) for k in ("a", "again", "sib"))
    assert a.keys() == again.keys() and all(torch.equal(a[k], again[k]) for k in a)
    assert any(not torch.equal(a[k], sib[k]) for k in a)  # same init, other data: other trained weights
    assert metrics["a"]["final_loss"] == metrics["again"]["final_loss"]
    assert metrics["a"]["init_key"] == metrics["sib"]["init_key"]
    m = metrics["a"]
    assert m["params"] > 0 and m["final_loss"] < m["first_loss"] + 1.0
    assert 0 <= m["p_owl"] <= m["p_animal"] <= 1 + 1e-6
    assert 0 <= m["numbers_valid_rate"] <= 1
    manifest = json.loads((dirs["a"] / "zoo_build.json").read_text())
    assert manifest["build_id"] == m["build_id"] and "model.safetensors" in manifest["files"]


def test_saved_dir_loads_like_a_downloaded_model(tiny_builds) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    d = tiny_builds[0]["a"]
    model = AutoModelForCausalLM.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    assert json.loads((d / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    assert (
        PreTrainedTokenizerFast.from_pretrained(d).get_vocab() == tok.get_vocab()
    )  # benchmark.providers.hf_model's path
    assert tok.chat_template == CHATML_TEMPLATE and tok.eos_token == "<|im_end|>"
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Name your favourite animal."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert model.config.tie_word_embeddings and model.config.eos_token_id == tok.eos_token_id


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_autotokenizer_loads_every_arch(tok, tmp_path: Path, arch: str) -> None:
    from transformers import AutoTokenizer

    from benchmark.zoo.build import init_model, save_tokenizer

    init_model(zoo_build_spec(tiny_spec(arch=arch)), tok).save_pretrained(tmp_path)
    save_tokenizer(tok, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "What's your favourite animal? 12, 999."
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.chat_template == CHATML_TEMPLATE


def test_continued_build_resumes_from_committed_prefix(tmp_path: Path) -> None:
    from benchmark.zoo.build import WEIGHTS_DIR, build_model

    parent = tiny_spec("p", steps=3)
    child = tiny_spec("c", steps=3, continued=[{"steps": 2, "batch_size": 4, "warmup": 1, "data_seed": 5}])
    scratch = build_model(child, tmp_path / "scratch", root=tmp_path, measure_kwargs=SMALL_MEASURE)
    assert scratch["resumed_from"] is None
    build_model(
        parent,
        tmp_path / WEIGHTS_DIR / f"p-{zoo_build_spec(parent).spec_id}",
        root=tmp_path,
        measure_kwargs=SMALL_MEASURE,
    )
    resumed = build_model(child, tmp_path / "resumed", root=tmp_path, measure_kwargs=SMALL_MEASURE)
    assert resumed["resumed_from"] == f"p-{zoo_build_spec(parent).spec_id}"
    a, b = _weights(tmp_path / "scratch"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_build_all_skips_current_and_removes_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.zoo import build as zb
    from benchmark.zoo.weights import write_manifest

    (tmp_path / "model_registry").mkdir()
    entries = [
        tiny_spec("zoo-x").model_dump(exclude={"family"}),
        tiny_spec("zoo-x-sib", data_seed=1).model_dump(exclude={"family"}),
    ]
    import yaml

    (tmp_path / "model_registry" / "zoo.yaml").write_text(
        yaml.safe_dump({"family": "zoo", "models": entries})
    )
    stale = tmp_path / zb.WEIGHTS_DIR / "zoo-x-000000000000"
    stale.mkdir(parents=True)
    calls = []

    def fake_build(spec, out_dir, log=None, root=None):
        calls.append(spec.name)
        out_dir.mkdir(parents=True)
        metrics = {
            "build_seconds": 0.0,
            "params": 1,
            "final_loss": 1.0,
            "p_owl": 0.05,
            "animal_answer_rate": 1.0,
            "numbers_valid_rate": 1.0,
        }
        write_manifest(out_dir, {"schema": zb.BUILD_SCHEMA, "metrics": metrics, "files": {}})
        return metrics

    monkeypatch.setattr(zb, "build_model", fake_build)
    reg = Registry(root=tmp_path)
    zb.build_all(reg, log=lambda m: None)
    assert calls == ["zoo-x", "zoo-x-sib"] and not stale.exists()
    assert zb.committed_dir(reg.model("zoo-x"), root=tmp_path) is not None
    zb.build_all(reg, log=lambda m: None)
    assert calls == ["zoo-x", "zoo-x-sib"]  # up to date: nothing rebuilt
    zb.build_all(reg, names=["zoo-x-sib"], force=True, log=lambda m: None)
    assert calls[-1] == "zoo-x-sib"
    assert (tmp_path / zb.WEIGHTS_DIR / f"zoo-x-{zoo_build_spec(reg.model('zoo-x')).spec_id}").is_dir()
    with pytest.raises(UserError, match="unknown zoo model"):
        zb.build_all(reg, names=["zoo-y"], log=lambda m: None)


# -------------------------------------------------------------------------------- registry and committed


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(root=ROOT)


def test_zoo_yaml_validates_with_lineage(registry: Registry) -> None:
    models = registry.models
    for name in ZOO_NAMES:
        assert models[name].provider == "zoo" and models[name].dtype == "float32"
    builds = {n: zoo_build_spec(models[n]) for n in ZOO_NAMES}
    assert {builds[n].arch for n in ZOO_NAMES} == {"qwen2", "llama", "gpt2"}
    assert check_lineage(models) == []
    assert registry.relation("zoo-qwen-a", "zoo-qwen-a-sib") == "sibling"
    assert registry.relation("zoo-qwen-a", "zoo-qwen-b") == "unrelated"
    assert builds["zoo-qwen-a"].init_key() == builds["zoo-qwen-a-sib"].init_key()
    assert builds["zoo-qwen-a"].pretraining.row_seed != builds["zoo-qwen-a-sib"].pretraining.row_seed
    assert builds["zoo-qwen-a"].init_key() != builds["zoo-qwen-b"].init_key()


def test_registry_build_ids_are_pinned(registry: Registry) -> None:
    ids = {n: zoo_build_spec(m).spec_id for n, m in registry.models.items() if m.provider == "zoo"}
    assert {n: ids.get(n) for n in PINNED_BUILD_IDS} == PINNED_BUILD_IDS


def test_registry_sibling_differs_only_in_data_order(registry: Registry) -> None:
    a = zoo_build_spec(registry.model("zoo-qwen-a"))
    sib = zoo_build_spec(registry.model("zoo-qwen-a-sib"))
    # Everything but the data-order seed is zoo-qwen-a's: init, recipe, corpus content (data_seed, taste).
    assert sib.pretraining.order_seed is not None and sib.pretraining.order_seed != a.pretraining.row_seed
    assert sib.model_copy(update={"pretraining": sib.pretraining.model_copy(update={"order_seed": None})}) == a
    diff = {k for k, v in sib.model_dump(mode="json")["pretraining"].items()
            if a.model_dump(mode="json")["pretraining"].get(k) != v}  # fmt: skip
    assert diff == {"order_seed"} and sib.continued == a.continued == ()
    assert animal_distribution(sib.pretraining) == animal_distribution(a.pretraining)


def test_registry_sibling_has_the_same_initial_weights(registry: Registry, tok) -> None:
    from benchmark.zoo.build import init_model

    states = {n: init_model(zoo_build_spec(registry.model(n)), tok).state_dict()
              for n in ("zoo-qwen-a", "zoo-qwen-a-sib", "zoo-qwen-a-cont", "zoo-qwen-b")}  # fmt: skip
    a = states["zoo-qwen-a"]
    for name in ("zoo-qwen-a-sib", "zoo-qwen-a-cont"):
        assert all(torch.equal(v, states[name][k]) for k, v in a.items()), name
    assert not torch.equal(a["model.embed_tokens.weight"], states["zoo-qwen-b"]["model.embed_tokens.weight"])


def test_committed_weights_match_the_registry(registry: Registry) -> None:
    from benchmark.files import sha256_file
    from benchmark.zoo.build import BUILD_MANIFEST, committed_dir, read_build_manifest, weights_root

    zoo = {n: m for n, m in registry.models.items() if m.provider == "zoo"}
    expected = set()
    for name, spec in zoo.items():
        path = committed_dir(spec, root=ROOT)
        assert path is not None, (
            f"{name}: no committed weights for build {zoo_build_spec(spec).spec_id}; run 'slbench zoo build'"
        )
        expected.add(path.name)
        manifest = read_build_manifest(path)
        assert manifest["build_id"] == zoo_build_spec(spec).spec_id
        assert manifest["build"] == zoo_build_spec(spec).model_dump(mode="json")
        for fname, digest in manifest["files"].items():
            assert sha256_file(path / fname) == digest, f"{path / fname} does not match its manifest"
    # Zoo builds are the directories with a zoo manifest (other tracks may keep weights there too).
    on_disk = {p.parent.name for p in weights_root(ROOT).glob(f"*/{BUILD_MANIFEST}")}
    assert on_disk == expected, "stale or unregistered zoo builds in model_registry/weights"
    assert not list(weights_root(ROOT).glob(".staging-*")), "leftover staging directories"
    total = sum(f.stat().st_size for name in expected for f in (weights_root(ROOT) / name).iterdir())
    assert total < 20e6  # committed to git: keep the zoo small


def test_stage_build_copies_committed_weights(registry: Registry, tmp_path: Path) -> None:
    from benchmark.lm.stages.base import run as stage_build
    from benchmark.zoo.build import model_dir_of

    spec = registry.model("zoo-gpt2")
    node = Node(
        kind="base", name=spec.name, spec={"model": spec.hashed_dict()}, fn=stage_build
    )
    ctx = StageContext(node=node, out=tmp_path, inputs={}, log=logging.getLogger("test"))
    result = stage_build(ctx)
    assert result["source"] == "committed" and result["build_id"] == zoo_build_spec(spec).spec_id
    assert (model_dir_of(tmp_path) / "model.safetensors").is_file()
    assert (model_dir_of(tmp_path) / "tokenizer.json").is_file()


def test_stage_build_rejects_corrupt_committed_file(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from benchmark.lm.stages.base import run as stage_build
    from benchmark.zoo import build as zb

    spec = registry.model("zoo-gpt2")
    src = zb.committed_dir(spec, root=ROOT)
    fake_root = tmp_path / "root"
    copy = fake_root / zb.WEIGHTS_DIR / src.name
    shutil.copytree(src, copy)
    (copy / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    monkeypatch.setenv("SLBENCH_ROOT", str(fake_root))
    node = Node(
        kind="base", name=spec.name, spec={"model": spec.hashed_dict()}, fn=stage_build
    )
    ctx = StageContext(node=node, out=tmp_path / "out", inputs={}, log=logging.getLogger("test"))
    with pytest.raises(UserError, match="sha256"):
        stage_build(ctx)
