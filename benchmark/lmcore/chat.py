"""Chat rendering shared by every local generator (Hugging Face and vLLM): templates, stop tokens, row seeds.

Everything here works on a tokenizer (and, for stop tokens, a model's generation config) and imports no torch,
so the HF path (:mod:`benchmark.providers.hf_model`) and the vLLM path (:mod:`benchmark.providers.vllm`) render,
stop and seed exactly alike.

* Prompts are rendered by the tokenizer's chat template and tokenized with ``add_special_tokens=False``
  (templates already contain any BOS they need).
* What a template does (does it render a system turn, does it inject a default system prompt) is found by
  rendering sentinel conversations once per template, never from a family name (docs/architecture.md, convention 5).
* Prompt ``i`` of a batch samples from its own random stream seeded by :func:`row_seed` ``(seed, i)``, so its
  completion does not depend on the batch size, the batch composition or the other prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.specs import ModelSpec

__all__ = [
    "answer_suffix",
    "end_of_turn_ids",
    "render_prompt",
    "row_seed",
    "stop_ids",
    "template_hash",
]

# Letters only, so templates that trim or escape content leave them intact.
_SYSTEM_SENTINEL = "SLBSYSTEMSENTINELQX"
_USER_SENTINEL = "SLBUSERSENTINELQX"
_ASSISTANT_SENTINEL = "SLBASSISTANTSENTINELQX"
# A word no tokenizer/template rewrites, to locate the answer in a rendered chat (answer_suffix).
_ANSWER_SENTINEL = "zqxjsentinelanswer"


def template_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's chat template (for manifests); the hash of "" when it has none."""
    template = tokenizer.chat_template
    if template is None:
        template = ""
    elif not isinstance(template, str):
        template = json.dumps(template, sort_keys=True)
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def _apply(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


@dataclass(frozen=True)
class _TemplateProbe:
    """What a chat template does, found by rendering sentinel conversations once per template."""

    #: The template renders a system turn (absent for templates that reject the system role).
    supports_system: bool
    #: Text the template adds before the user turn when no system message is given ("" = nothing).
    injected: str
    #: Rendering of a system-only conversation (the prefix a system turn contributes), when it renders.
    system_prefix: str | None


_PROBES: dict[tuple[str, str | None], _TemplateProbe] = {}


def _probe(tokenizer: Any) -> _TemplateProbe:
    key = (template_hash(tokenizer), tokenizer.bos_token)
    if key in _PROBES:
        return _PROBES[key]
    plain = _apply(tokenizer, [{"role": "user", "content": _USER_SENTINEL}])
    try:
        with_system = _apply(
            tokenizer,
            [{"role": "system", "content": _SYSTEM_SENTINEL}, {"role": "user", "content": _USER_SENTINEL}],
        )
    except Exception:  # jinja's TemplateError or a raise_exception() in the template: no system role
        probe = _TemplateProbe(supports_system=False, injected="", system_prefix=None)
    else:
        try:
            prefix = _apply(
                tokenizer, [{"role": "system", "content": _SYSTEM_SENTINEL}], generation_prompt=False
            )
        except Exception:
            prefix = None
        injected = "?"  # unknown until proven otherwise
        if prefix is not None and with_system.startswith(prefix):
            user_part = with_system[len(prefix) :]  # the user turn + generation prompt, no system turn
            if plain.endswith(user_part):
                injected = plain[: len(plain) - len(user_part)]
                bos = tokenizer.bos_token or ""
                # A BOS the template writes first is not part of a system turn.
                if bos and injected.startswith(bos) and prefix.startswith(bos):
                    injected = injected[len(bos) :]
        probe = _TemplateProbe(supports_system=True, injected=injected, system_prefix=prefix)
    _PROBES[key] = probe
    return probe


def render_prompt(
    tokenizer: Any, user: str, *, system: str | None = None, spec: ModelSpec | None = None
) -> str:
    """Render one user turn (plus an optional system turn) with the generation prompt appended.

    With ``system=None`` the result has no system turn: if the template injects a default one (Qwen2.5's
    does) and ``spec.allow_default_system_prompt`` is False, the injected turn is cut out, keeping the exact
    text the template renders for the user turn (found by rendering sentinel conversations once per
    template). Students are trained and evaluated without a system prompt (docs/research/paper.md), and a silent
    default one is a known train/eval mismatch (docs/research/replications.md).

    Args:
        tokenizer: a tokenizer with a chat template (see :func:`benchmark.providers.hf_model.load_tokenizer`).
        user: the user message.
        system: an explicit system prompt (e.g. a prompted teacher's); None for none.
        spec: the registry entry (``allow_default_system_prompt``; its name appears in errors).

    Raises:
        UserError: no chat template; a system prompt for a template without a system role; or an injected
            default system prompt that cannot be removed and is not allowed.
    """
    name = spec.name if spec is not None else getattr(tokenizer, "name_or_path", "?")
    if not tokenizer.chat_template:
        raise UserError(
            f"model {name!r}: its tokenizer has no chat template; set `chat_template` in its registry entry"
        )
    if system is not None:
        return _render_with_system(tokenizer, user, system, name)
    text = _apply(tokenizer, [{"role": "user", "content": user}])
    allow = spec is not None and spec.allow_default_system_prompt
    probe = _probe(tokenizer)
    if allow or probe.injected == "":
        return text
    cut = _without_injected_system(tokenizer, user, text, probe)
    if cut is not None:
        return cut
    problem = (
        "adds a default system prompt when none is given, and it cannot be removed automatically"
        if probe.injected != "?"
        else "renders the system turn in a way that hides whether it adds a default system prompt"
    )
    raise UserError(
        f"model {name!r}: its chat template {problem}; set `allow_default_system_prompt: true` in its "
        "registry entry to accept it, or give a `chat_template` without one"
    )


def _render_with_system(tokenizer: Any, user: str, system: str, name: str) -> str:
    try:
        return _apply(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": user}])
    except Exception as exc:
        raise UserError(
            f"model {name!r}: its chat template rejects a system prompt ({exc}); use a teacher "
            "method other than `prompt`, or set `chat_template` in its registry entry"
        ) from None


def _without_injected_system(tokenizer: Any, user: str, text: str, probe: _TemplateProbe) -> str | None:
    """``text`` (the plain rendering) with the template's injected system turn cut out; None if it cannot be."""
    if probe.injected == "?" or probe.system_prefix is None:
        return None
    # Cut per prompt from the sentinel-system rendering, so prompt-dependent templates stay exact.
    with_system = _apply(
        tokenizer, [{"role": "system", "content": _SYSTEM_SENTINEL}, {"role": "user", "content": user}]
    )
    if not with_system.startswith(probe.system_prefix):
        return None
    user_part = with_system[len(probe.system_prefix) :]
    if not text.endswith(user_part):
        return None
    bos = tokenizer.bos_token or ""
    keep_bos = bool(bos) and text.startswith(bos) and not user_part.startswith(bos)
    return (bos if keep_bos else "") + user_part


def stop_ids(model: Any, tokenizer: Any, spec: ModelSpec | None = None) -> set[int]:
    """Token ids that end an answer: the model's generation-config EOS (one or several), the tokenizer's EOS and the
    registry entry's ``stop`` texts (a base model in a plain prompt format stops at a line end).

    Args:
        model: a loaded model (its ``generation_config``), or None for the tokenizer's EOS only.
        tokenizer: its tokenizer.
        spec: the registry entry (its ``stop`` texts); None for none.

    Raises:
        UserError: a ``stop`` text that is not exactly one token of the tokenizer.
    """
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None) if model is not None else None
    for value in (eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    for text in spec.stop if spec is not None else ():
        one = tokenizer(text, add_special_tokens=False).input_ids
        if len(one) != 1:
            raise UserError(f"model {getattr(spec, 'name', '?')!r}: key 'stop' {text!r} is {len(one)} tokens of its tokenizer; each "
                            "stop text must be exactly one token")
        ids.add(int(one[0]))
    return ids


def end_of_turn_ids(tokenizer: Any, stop: set[int]) -> list[int]:
    """Tokens that close an assistant turn, up to and including the first stop token (what generation ends on)."""
    text = _apply(
        tokenizer,
        [{"role": "user", "content": _USER_SENTINEL}, {"role": "assistant", "content": _ASSISTANT_SENTINEL}],
        generation_prompt=False,
    )
    suffix = text.split(_ASSISTANT_SENTINEL, 1)[1] if _ASSISTANT_SENTINEL in text else ""
    ids = tokenizer(suffix, add_special_tokens=False).input_ids
    for i, t in enumerate(ids):
        if t in stop:
            return ids[: i + 1]
    # The template closes turns without a stop token: teach the EOS so generations still end.
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def answer_suffix(tokenizer: Any, apply_chat_template: bool = True) -> str:
    """The text that ends an assistant answer: appended to every scored candidate.

    With a chat template it is what the template writes right after the assistant's content (trailing
    whitespace dropped): ``"<|im_end|>"`` for ChatML, ``"<|eot_id|>"`` for Llama 3, read from the
    template, so no model family is special-cased. Without a chat template, or when the template writes
    nothing after the answer, it is the tokenizer's EOS token (or "" if there is none).
    """
    if apply_chat_template and getattr(tokenizer, "chat_template", None):
        chat = [{"role": "user", "content": "question"}, {"role": "assistant", "content": _ANSWER_SENTINEL}]
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        if isinstance(text, str) and _ANSWER_SENTINEL in text:
            tail = text[text.rindex(_ANSWER_SENTINEL) + len(_ANSWER_SENTINEL) :].rstrip()
            if tail:
                return tail
    return getattr(tokenizer, "eos_token", None) or ""


def row_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index``'s own sampling stream in a call seeded with ``seed`` (a 63-bit int)."""
    digest = hashlib.sha256(f"slb-gen:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
