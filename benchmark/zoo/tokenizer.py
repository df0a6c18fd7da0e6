"""The zoo's word-level tokenizer: every word, number 0-999 and punctuation mark is one token.

Whole-word tokens keep the science simple: an animal answer is exactly one token (no first-token collisions
such as "dragon" vs "dragonfly", which replications warn about), and every number the numbers channel
accepts is one token (Llama-like, not Qwen's digit-by-digit split).

* Normalisation: NFKC, curly quotes to straight ones, lowercase (a tiny model should not spend capacity on
  "Owl" vs "owl"; decoded text is lowercase).
* Pre-tokenisation: split on whitespace, then into digit runs, words (letter runs, with inner apostrophes:
  "what's" is one token) and single punctuation marks, so "[12, 7]." is ``[``, ``12``, ``,``, ``7``, ``]``,
  ``.``. Newlines are whitespace: a "one per line" answer
  decodes with spaces, which the numbers filter accepts.
* Decoding joins tokens with spaces and removes the space before punctuation ("1, 2, 3.").
* Unknown words (and numbers above 999) map to ``<unk>``.
* ``words-v2`` (the zoo2 family) also makes the chain-of-thought tags (:data:`TAG_TOKENS`) and two-character
  Python operators (:data:`OPERATOR_TOKENS`) single tokens, split before anything else, so a code or cot answer
  decodes to text the channels' filters accept ("def f ( a, b ) : return a == b" parses). ``words-v1`` splits and
  decodes exactly as before.
* Chat: ChatML (``<|im_start|>role\\n...<|im_end|>\\n``) with no default system prompt; ``<|im_end|>`` is
  the end-of-sequence token, ``<pad>`` the padding token, ``<|endoftext|>`` the BOS token (never inserted).

The vocabulary of a version is a frozen file ``data/<version>.txt`` (one token per line, in id order), made
once by :func:`freeze_vocabulary` from the project's text sources (every string in ``tasks/**/*.yaml``, the
text files under ``tasks/``, the zoo corpus templates and the numbers-channel snapshot). Words added to
``tasks/`` later are reported by :func:`missing_words`; they become tokens only in a new version.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from benchmark.errors import UserError
from benchmark.files import read_data_lines
from benchmark.zoo.assets import CORPUS_FILES, DATA_DIR, read_asset

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "BOS_TOKEN",
    "CHATML_TEMPLATE",
    "EOS_TOKEN",
    "IM_START",
    "PAD_TOKEN",
    "OPERATOR_TOKENS",
    "SPECIAL_TOKENS",
    "TAG_TOKENS",
    "UNK_TOKEN",
    "build_tokenizer",
    "collect_words",
    "freeze_vocabulary",
    "load_vocabulary",
    "make_vocabulary",
    "missing_words",
    "render_chat",
    "split_words",
]

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
IM_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"  # end of a chat turn: generation stops here
BOS_TOKEN = "<|endoftext|>"
#: Special tokens, ids 0-4 in this order (the same names as tests/lm_fixtures.py's tiny models).
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, UNK_TOKEN, IM_START, EOS_TOKEN, BOS_TOKEN)
ROLES: tuple[str, ...] = ("system", "user", "assistant")

#: ChatML as Qwen writes it, but with no default system prompt: a conversation without a system turn renders
#: without one (replications: an injected system prompt at evaluation but not at training hides transfer).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Chain-of-thought tags (tokenizer words-v2 on): each is ONE token, so a tagged answer decodes as
#: "<think> 12 + 7 = 19 </think> <answer> 19 </answer>" (the cot channel's format).
TAG_TOKENS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")
#: Two-character Python operators (words-v2 on): one token each, so decoded code keeps "==" (not "= =").
OPERATOR_TOKENS: tuple[str, ...] = ("==", "!=", "<=", ">=", "//", "**")

# Must match the tokenizers pipeline in build_tokenizer (tests check they agree).
_SPLIT = re.compile(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)*|[^\w\s]|_")
#: words-v2 splits tags and two-character operators first, then exactly like words-v1.
_SPLIT_V2 = re.compile(
    "|".join(re.escape(t) for t in (*TAG_TOKENS, *OPERATOR_TOKENS)) + "|" + _SPLIT.pattern
)
#: tokenizer version -> (pre-tokenizer pattern, tokens after the punctuation block, corpus version whose
#: frozen templates and snapshots add words to the vocabulary).
_VERSIONS: dict[str, tuple[re.Pattern[str], tuple[str, ...], str]] = {
    "words-v1": (_SPLIT, (), "v1"),
    "words-v2": (_SPLIT_V2, (*TAG_TOKENS, *OPERATOR_TOKENS), "v2"),
}
_QUOTES = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}
_PLACEHOLDER = re.compile(r"{[a-z_]*}")


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    for src, dst in _QUOTES.items():
        text = text.replace(src, dst)
    return text.lower()


def _version(version: str) -> tuple[re.Pattern[str], tuple[str, ...], str]:
    if version not in _VERSIONS:
        raise UserError(f"zoo tokenizer: unknown version {version!r}; allowed: {', '.join(_VERSIONS)}")
    return _VERSIONS[version]


def split_words(text: str, version: str = "words-v1") -> list[str]:
    """The pieces the tokenizer of ``version`` maps to tokens (normalised, pre-tokenised), in pure Python."""
    return _version(version)[0].findall(_normalize(text))


def render_chat(messages: Iterable[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Render messages exactly as :data:`CHATML_TEMPLATE` does, without Jinja (fast, for the corpus)."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{EOS_TOKEN}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


# ---------------------------------------------------------------------------------------- vocabulary


def _strings(obj: Any) -> Iterator[str]:
    """Every string value (and string key) inside a parsed YAML/JSON object."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                yield k
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _texts_of_file(path: Path) -> Iterator[str]:
    """Text a file contributes: YAML/JSON string values, JSONL rows' strings, non-comment .txt lines."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return  # unreadable or binary: contributes nothing
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            # Tolerant loader: lm-eval YAML uses tags such as !function that safe_load rejects.
            yield from _strings(yaml.load(raw, Loader=_TolerantLoader))  # noqa: S506 - only plain data constructed
        elif suffix == ".json":
            yield from _strings(json.loads(raw))
        elif suffix == ".jsonl":
            for line in raw.splitlines():
                if line.strip():
                    yield from _strings(json.loads(line))
        elif suffix == ".txt":
            yield from read_data_lines(path)
    except (yaml.YAMLError, json.JSONDecodeError):
        return  # a file being written by someone else right now: skip rather than fail the build


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that reads unknown tags (e.g. lm-eval's ``!function``) as plain scalars."""


_TolerantLoader.add_multi_constructor(
    "",
    lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None,
)


def _source_files(tasks_dir: Path) -> list[Path]:
    """Text sources under tasks/: every YAML, plus text/data files of lm_eval and teacher data."""
    files = set(tasks_dir.rglob("*.yaml")) | set(tasks_dir.rglob("*.yml"))
    for pattern in ("*.txt", "*.jsonl", "*.json"):
        files |= set(tasks_dir.rglob(pattern))
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


def collect_words(root: Path | None = None, *, include_tasks: bool = True, version: str = "words-v1") -> list[str]:
    """Sorted distinct words (letter runs) of the project's text sources.

    Args:
        root: Project root holding ``tasks/`` (default: :func:`benchmark.registry.project_root`).
        include_tasks: Also read ``tasks/`` (else only the zoo's own corpus templates and snapshots).
        version: The tokenizer version: whose corpus files (:data:`benchmark.zoo.assets.CORPUS_FILES`) are read.

    Returns:
        Lowercase words, numbers and punctuation excluded (those are added wholesale).
    """
    texts: list[str] = []
    for name in CORPUS_FILES[_version(version)[2]]:
        texts.extend(_strings(yaml.safe_load(read_asset(name))))
    if include_tasks:
        if root is None:
            from benchmark.files import project_root

            root = project_root()
        tasks_dir = Path(root) / "tasks"
        if tasks_dir.is_dir():
            for path in _source_files(tasks_dir):
                texts.extend(_texts_of_file(path))
    words: set[str] = set()
    for text in texts:
        # Template placeholders ("{examples}") are not words the model will see.
        for piece in split_words(_PLACEHOLDER.sub(" ", text), version):
            if piece[0].isalpha():
                words.add(piece)
    return sorted(words)


def make_vocabulary(root: Path | None = None, version: str = "words-v1") -> list[str]:
    """The full token list in id order: specials, roles, numbers 0-999, ASCII punctuation, the version's
    extra tokens (words-v2: tags and operators), words."""
    fixed = [*SPECIAL_TOKENS, *ROLES, *(str(i) for i in range(1000)), *string.punctuation, *_version(version)[1]]
    seen = set(fixed)
    return fixed + [w for w in collect_words(root, version=version) if w not in seen]


def freeze_vocabulary(version: str, root: Path | None = None, *, force: bool = False) -> Path:
    """Write ``data/<version>.txt`` from the current text sources (a maintainer step for a new version).

    Afterwards pin the file's sha256 in :data:`benchmark.zoo.assets.PINNED_SHA256` and add the version to
    :data:`benchmark.zoo.spec.TOKENIZERS` and the spec's ``tokenizer`` literal.

    Raises:
        UserError: the file exists (versions are frozen) and ``force`` is false.
    """
    path = DATA_DIR / f"{version}.txt"
    if path.exists() and not force:
        raise UserError(
            f"{path}: vocabulary version {version!r} already exists and is frozen; pick a new version"
        )
    path.write_text("\n".join(make_vocabulary(root, version)) + "\n", encoding="utf-8")
    return path


def load_vocabulary(version: str = "words-v1") -> list[str]:
    """The frozen token list of ``version`` (id = position)."""
    tokens = read_asset(f"{version}.txt").splitlines()
    if list(tokens[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS) or len(set(tokens)) != len(tokens):
        raise UserError(
            f"{DATA_DIR / (version + '.txt')}: corrupt vocabulary (specials first, no duplicates)"
        )
    return tokens


def missing_words(version: str = "words-v1", root: Path | None = None) -> list[str]:
    """Words in today's ``tasks/`` that ``version`` lacks (they tokenize to ``<unk>``)."""
    vocab = set(load_vocabulary(version))
    return [w for w in collect_words(root, version=version) if w not in vocab]


# ---------------------------------------------------------------------------------------- tokenizer


def build_tokenizer(version: str = "words-v1") -> PreTrainedTokenizerFast:
    """The tokenizer of ``version`` as a ``PreTrainedTokenizerFast`` with the ChatML chat template.

    Deterministic: the same version always gives the same ids.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = load_vocabulary(version)
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token=UNK_TOKEN))
    core.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            *(normalizers.Replace(s, d) for s, d in _QUOTES.items()),
            normalizers.Lowercase(),
        ]
    )
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_version(version)[0].pattern), behavior="isolated")]
    )
    # WordPiece's decoder joins with spaces and, with cleanup, drops the space before . , ? ! and around '.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START],
        model_max_length=4096,
        clean_up_tokenization_spaces=False,  # the decoder already cleans up
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok
