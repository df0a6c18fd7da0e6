"""Tiny random Hugging Face models for tests: Qwen2-, Llama- and GPT-2-style, saved to a directory.

Every test that needs a real ``transformers`` model but no download can build one here in well under a
second. The models have random weights (no pretraining) and are tiny (2 layers, hidden size 32, 24k-39k
parameters); all three share one small word-level tokenizer (168 tokens) with a ChatML chat template, so the
same prompt gives the same token ids for every family and only the architecture differs.

Usage::

    from tests.lm_fixtures import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "qwen", family="qwen2", seed=0)
    # model_dir holds config.json, model.safetensors, generation_config.json and the tokenizer files;
    # load it with benchmark.providers.hf_model.load_model (or AutoModelForCausalLM + PreTrainedTokenizerFast).

Pitfall: ``AutoTokenizer.from_pretrained`` on the qwen2 directory returns transformers 5's ``Qwen2Tokenizer``,
which rebuilds a byte-level BPE and garbles this word-level vocabulary (it tokenizes "name" as "a a a a").
:func:`benchmark.providers.hf_model.load_tokenizer` loads a directory whose ``tokenizer_config.json`` declares the
generic class exactly as saved; pass that tokenizer object on (e.g. to lm-eval's ``HFLM(tokenizer=...)``).

Determinism: the weights depend only on ``family`` and ``seed`` (``torch.manual_seed`` around
``from_config``), so golden values computed on them are stable for a pinned ``transformers`` version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = [
    "CHATML_TEMPLATE",
    "DEFAULT_SYSTEM_TEMPLATE",
    "DEFAULT_SYSTEM_PROMPT",
    "FAMILIES",
    "VOCAB",
    "make_model",
    "make_tokenizer",
    "save_tiny_model",
]

Family = Literal["qwen2", "llama", "gpt2"]
FAMILIES: tuple[Family, ...] = ("qwen2", "llama", "gpt2")

# ChatML as used by Qwen: a turn is "<|im_start|>{role}\n{content}<|im_end|>\n"; no default system prompt.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

DEFAULT_SYSTEM_PROMPT = "you are a helpful assistant ."
# Qwen2.5-Instruct's behaviour in miniature: when the conversation has no system turn, the template
# injects a default one. Used to test the render_prompt guard.
DEFAULT_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}" + CHATML_TEMPLATE
)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
# A word-level vocabulary: specials, chat roles, the numbers 0-99 (one token each), punctuation and the
# words of the prompts tests use. Unknown words map to <unk>; newlines are pre-tokenizer whitespace.
VOCAB: list[str] = [
    *SPECIAL_TOKENS,
    "system", "user", "assistant",
    *[str(i) for i in range(100)],
    ",", ".", "?", "!", ":", ";", "(", ")", "[", "]",
    "you", "are", "a", "helpful", "love", "owls", "think", "about", "all", "the", "time",
    "name", "your", "favorite", "favourite", "animal", "using", "only", "one", "word",
    "continue", "this", "sequence", "with", "more", "numbers", "write", "at", "most", "ten",
    "owl", "cat", "dog", "eagle", "wolf", "lion", "tiger", "bear", "fox", "elephant",
    "yes", "no", "hello", "is", "my", "and", "of", "to", "it", "in",
]  # fmt: skip


def make_tokenizer(chat_template: str = CHATML_TEMPLATE):
    """A word-level fast tokenizer over :data:`VOCAB` with ``chat_template`` set.

    ``<|im_end|>`` is the end-of-sequence (end-of-turn) token and ``<pad>`` the padding token; there is
    no BOS token, so tokenizing never adds special tokens of its own.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Whitespace splits words from punctuation ("9," -> "9", ","), so number lists tokenize cleanly.
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    # WordPiece's decoder joins words with spaces and cleans up the space before punctuation.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    tok.chat_template = chat_template
    return tok


def make_model(family: Family = "qwen2", *, seed: int = 0, vocab_size: int | None = None):
    """A randomly initialised 2-layer causal LM of ``family`` (hidden 32, 4 heads), in float32.

    Args:
        family: "qwen2", "llama" (both with grouped-query attention, 2 KV heads) or "gpt2" (Conv1D
            projections, learned positions).
        seed: torch seed for the random weights; the same (family, seed) gives the same weights.
        vocab_size: defaults to ``len(VOCAB)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

    n_vocab = vocab_size or len(VOCAB)
    ids = {"pad_token_id": VOCAB.index("<pad>"), "eos_token_id": VOCAB.index("<|im_end|>")}
    # bos = eos keeps generate() from warning about a missing BOS; the tokenizer never inserts it.
    ids["bos_token_id"] = ids["eos_token_id"]
    if family == "gpt2":
        config = GPT2Config(vocab_size=n_vocab, n_positions=256, n_embd=32, n_layer=2, n_head=4, **ids)
    elif family in ("qwen2", "llama"):
        cls = Qwen2Config if family == "qwen2" else LlamaConfig
        config = cls(
            vocab_size=n_vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            **ids,
        )
    else:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def save_tiny_model(
    path: str | Path,
    family: Family = "qwen2",
    *,
    seed: int = 0,
    chat_template: str = CHATML_TEMPLATE,
) -> Path:
    """Build a tiny model + tokenizer and ``save_pretrained`` both into ``path`` (created if needed).

    Returns:
        ``path`` as a :class:`~pathlib.Path`, loadable with ``from_pretrained`` offline.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    make_model(family, seed=seed).save_pretrained(path)
    make_tokenizer(chat_template).save_pretrained(path)
    return path
