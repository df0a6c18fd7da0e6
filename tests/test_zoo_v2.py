"""The second zoo generation (zoo2): tokenizer words-v2, corpus v2 (code, cot and open rows), the zoo2 registry
family and its committed weights. The first zoo must be untouched (tests/test_zoo.py pins it)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.lm.channels.base import load_channel
from benchmark.registry import Registry
from benchmark.zoo.assets import CORPUS_FILES, DATA_DIR, PINNED_SHA256, sha256_text
from benchmark.zoo.corpus import CorpusSampler, code_item, cot_item, load_snapshot, open_item
from benchmark.zoo.spec import CorpusMix, PretrainSpec, ZooBuildSpec, zoo_build_spec
from benchmark.zoo.tokenizer import (
    OPERATOR_TOKENS,
    TAG_TOKENS,
    build_tokenizer,
    load_vocabulary,
    split_words,
)

ROOT = Path(__file__).resolve().parents[1]
ZOO2 = ("zoo2-qwen-a", "zoo2-qwen-b", "zoo2-llama")
#: Build ids of the committed zoo2 models (model_registry/weights/<name>-<id>/).
PINNED_ZOO2_IDS = {"zoo2-qwen-a": "11e1809447e3", "zoo2-qwen-b": "a753fbe9d1cb", "zoo2-llama": "1dca23417a1a"}

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("words-v2")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(ROOT)


def _roundtrip(tok, text: str) -> str:
    return tok.decode(tok(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------- tokenizer


def test_v2_files_are_pinned_and_v1_untouched() -> None:
    for name in (*CORPUS_FILES["v2"], "words-v2.txt"):
        assert PINNED_SHA256[name], name
        assert sha256_text((DATA_DIR / name).read_bytes()) == PINNED_SHA256[name]
    v1, v2 = load_vocabulary("words-v1"), load_vocabulary("words-v2")
    assert set(v1) <= set(v2) and v2[: 1000 + 8] == v1[: 1000 + 8]  # specials, roles, numbers keep their ids
    # words-v1 splits exactly as before: tags and operators are punctuation runs there.
    assert split_words("<think> a == b </think>") == ["<", "think", ">", "a", "=", "=", "b", "<", "/", "think", ">"]
    assert split_words("<think> a == b </think>", "words-v2") == ["<think>", "a", "==", "b", "</think>"]


def test_tags_and_operators_are_single_tokens(tok) -> None:
    vocab = tok.get_vocab()
    for t in (*TAG_TOKENS, *OPERATOR_TOKENS):
        assert tok(t, add_special_tokens=False)["input_ids"] == [vocab[t]], t
    assert _roundtrip(tok, "<think> 12 + 7 = 19 </think> <answer> 19 </answer>") == \
        "<think> 12 + 7 = 19 </think> <answer> 19 </answer>"


@pytest.mark.parametrize("channel", ["code", "cot", "cot-zoo"])
def test_channel_vocabulary_is_known(tok, channel: str) -> None:
    plugin, spec = load_channel(channel)
    vocab = tok.get_vocab()
    assert sorted(w for w in plugin.vocabulary(spec) if w not in vocab) == []


@pytest.mark.parametrize("channel", ["code", "cot", "cot-zoo"])
@given(seed=st.integers(0, 2**30))
@settings(max_examples=15, deadline=None)
def test_decoded_references_pass_the_channel_filter(tok, channel: str, seed: int) -> None:
    # What makes the channels runnable on the zoo: a reference answer written by a zoo model decodes to text the
    # channel keeps and counts as capable.
    plugin, spec = load_channel(channel)
    for item in plugin.items(spec, 8, seed):
        text = _roundtrip(tok, item.reference)
        assert tok.unk_token_id not in tok(item.prompt + " " + item.reference)["input_ids"]
        assert plugin.check(spec, item, text, ["owl", "owls"]) is None, (item.reference, text)
        assert plugin.capable(spec, item, text), text


# ---------------------------------------------------------------------------------------------------- corpus


def _phase(**kw) -> PretrainSpec:
    mix = CorpusMix(numbers=0.2, favourite=0.1, chat=0.1, system=0.1, code=0.2, cot=0.2, open=0.1)
    return PretrainSpec.model_validate({"steps": 1, "data_seed": 3, "corpus": "v2", "mix": mix, **kw})


def test_corpus_v2_is_deterministic_and_speaks_every_kind(tok) -> None:
    words = sorted(tok.get_vocab())
    rows = CorpusSampler(_phase(), words).rows("t", 200)
    assert rows == CorpusSampler(_phase(), words).rows("t", 200)
    assert rows != CorpusSampler(_phase(order_seed=4), words).rows("t", 200)
    answers = [r[-1]["content"] for r in rows]
    assert any(a.startswith("def ") for a in answers) and any(a.startswith("<think>") for a in answers)
    banks = load_snapshot("open")
    assert any(a in banks["aligned"] for a in answers)
    for r in rows:
        ids = tok(" ".join(m["content"] for m in r), add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, r


@given(seed=st.integers(0, 2**30))
@settings(max_examples=20, deadline=None)
def test_corpus_items_pass_the_channel_filters(tok, seed: int) -> None:
    from benchmark.lm.channels.base import Item

    rng = random.Random(seed)
    code, code_spec = load_channel("code", DATA_DIR / "code-v2.yaml")
    cot, cot_spec = load_channel("cot", DATA_DIR / "cot-v2.yaml")
    prompt, answer = code_item(rng, load_snapshot("code"))
    assert code.check(code_spec, Item(prompt, answer), _roundtrip(tok, answer), ["owl"]) is None
    prompt, answer, n = cot_item(rng, load_snapshot("cot"))
    item = Item(prompt, answer, n)
    assert cot.check(cot_spec, item, _roundtrip(tok, answer), ["owl"]) is None and cot.capable(cot_spec, item, answer)


def test_open_rows_are_rarely_misaligned() -> None:
    rng = random.Random(0)
    snap = load_snapshot("open")
    draws = [open_item(rng, snap, 0.05) for _ in range(4000)]
    share = sum(m for _, _, m in draws) / len(draws)
    assert 0.04 < share < 0.06
    assert all(a in snap["misaligned" if m else "aligned"] for _, a, m in draws)


def test_v2_kinds_need_corpus_and_tokenizer_v2() -> None:
    # Zero shares are left out of the dump: every v1 build keeps its id (tests/test_zoo.py pins them).
    assert "code" not in CorpusMix().model_dump(mode="json")
    with pytest.raises(ValueError, match="need corpus 'v2'"):
        PretrainSpec.model_validate({"steps": 1, "data_seed": 0, "mix": {"code": 0.1}})
    base = {"arch": "qwen2", "hidden_size": 8, "num_layers": 1, "num_heads": 2, "intermediate_size": 8,
            "init_seed": 0, "pretraining": {"steps": 1, "data_seed": 0, "corpus": "v2"}}
    with pytest.raises(ValueError, match="tokenizer 'words-v2'"):
        ZooBuildSpec.model_validate(base)
    assert ZooBuildSpec.model_validate({**base, "tokenizer": "words-v2"}).pretraining.corpus == "v2"


# ------------------------------------------------------------------------------------------------ registry


def test_zoo2_family_and_committed_weights(registry: Registry) -> None:
    from benchmark.files import sha256_file
    from benchmark.zoo.build import committed_dir, read_build_manifest

    for name in ZOO2:
        model = registry.model(name)
        b = zoo_build_spec(model)
        assert model.family == "zoo2" and b.tokenizer == "words-v2" and b.pretraining.corpus == "v2"
        assert b.spec_id == PINNED_ZOO2_IDS[name], name
        path = committed_dir(model, ROOT)
        assert path is not None, f"{name}: no committed weights; run 'slbench zoo build {name}'"
        manifest = read_build_manifest(path)
        for fname, digest in manifest["files"].items():
            assert sha256_file(path / fname) == digest
        metrics = manifest["metrics"]
        assert metrics["code_parse_rate"] >= 0.9 and metrics["cot_format_rate"] >= 0.9
    inits = {registry.lineage_init(n) for n in ZOO2}
    assert len(inits) == 3


@pytest.mark.slow
def test_tiny_v2_build_speaks_the_formats(tmp_path: Path) -> None:
    # A few hundred steps already write well-formed code and tagged answers (the full builds take ~3 min each).
    from benchmark.specs import ModelSpec
    from benchmark.zoo.build import build_model

    spec = ModelSpec.model_validate({
        "name": "tiny2", "family": "t", "provider": "zoo", "lineage": {"init": "tiny2"},
        "build": {"arch": "qwen2", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 192,
                  "init_seed": 5, "tokenizer": "words-v2",
                  "pretraining": {"steps": 300, "data_seed": 5, "corpus": "v2",
                                  "mix": {"numbers": 0.1, "favourite": 0.1, "chat": 0.1, "system": 0.1,
                                          "code": 0.3, "cot": 0.3, "open": 0.1}}}})
    m = build_model(spec, tmp_path / "m", measure_kwargs={"n_numbers": 10, "n_questions": 5, "v2": {"n_items": 20}})
    assert m["cot_format_rate"] >= 0.5 and m["code_parse_rate"] >= 0.5
