"""Which student recipes can train on which teacher's data: checked at plan time, from registry facts alone.

A ``distill`` student matches its teacher's stored top-k next-token log-probs, token id by token id, so it needs
the teacher's vocabulary; an ``sft`` student trains on the completion text and works across tokenizers. The
student stage compares the real vocabularies when it runs (``tokenizer_sha``); this module decides the same
question before anything is spent, from each model's :meth:`~benchmark.providers.base.Backend.tokenizer_id`
(the registry key ``tokenizer``, else what the provider derives: a zoo build's tokenizer version, an hf entry's
source at its revision; None for API models, which return no token ids).

:func:`recipe_compatible` is the one rule; ``settings.student.vocab_map: alphabet`` (soft labels moved across
vocabularies over the channel's alphabet, :mod:`benchmark.lm.vocab_map`) extends it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.errors import UserError
from benchmark.providers.base import backend_for

if TYPE_CHECKING:
    from benchmark.lm.settings import LMSettings
    from benchmark.registry import Registry
    from benchmark.specs import ModelSpec, SuiteSpec

__all__ = ["SFT_RECIPE", "check_recipes", "recipe_compatible", "tokenizer_id"]

#: The committed suite whose student recipe works across tokenizers (sampled text, LoRA students): what to copy.
SFT_RECIPE = "tasks/suites/real-smol.yaml"


def tokenizer_id(model: ModelSpec) -> str | None:
    """The vocabulary ``model``'s token ids index (equal ids: shared token ids); None for API models."""
    return backend_for(model).tokenizer_id(model)


def recipe_compatible(teacher: ModelSpec, student: ModelSpec, objective: str, vocab_map: str | None = None,
                      channel: str | None = None) -> str | None:
    """Whether a ``student`` base can train with ``objective`` on a dataset written by a ``teacher`` base.

    ``vocab_map="alphabet"`` (``settings.student.vocab_map``) moves the teacher's soft labels over the ``channel``'s
    alphabet onto the student's ids (:mod:`benchmark.lm.vocab_map`): any two local models then pair, whatever their
    tokenizers; whether each tokenizer writes the alphabet one character per token is checked when the student
    runs (both real families here do: SmolLM2 and Gemma 3).

    Returns:
        None when it can; else why not, as a clause that names both models (for a one-line error).
    """
    if objective != "distill":
        return None  # sft trains on the completion text: any tokenizer on either side
    t_id = tokenizer_id(teacher)
    if t_id is None:
        return (f"teacher {teacher.name} is an API model: its rows carry text, not the token-level log-probs that "
                "objective 'distill' trains on")
    s_id = tokenizer_id(student)
    if vocab_map == "alphabet":
        from benchmark.lm.vocab_map import ALPHABETS

        if channel not in ALPHABETS:
            return (f"vocab_map 'alphabet' maps the soft labels of channels with an alphabet ({', '.join(ALPHABETS)}), "
                    f"not {channel!r}")
        if s_id is None:
            return f"student {student.name} is an API model: it cannot train on soft labels"
        return None
    if s_id != t_id:
        return (f"objective 'distill' needs the teacher's vocabulary (token-level log-probs), but teacher "
                f"{teacher.name} (tokenizer {t_id}) and student {student.name} (tokenizer {s_id}) do not share one")
    return None


def check_recipes(suite: SuiteSpec, settings: LMSettings, reg: Registry) -> None:
    """Refuse a suite with a (teacher, student) pair whose student recipe cannot use that teacher's data.

    Raises:
        UserError: one line naming the first such pair, how many there are, and the fix.
    """
    objective = settings.student.objective
    vmap, channel = settings.student.vocab_map, settings.dataset.channel
    bad = [(t, s, why) for t in suite.teachers for s in suite.students
           if (why := recipe_compatible(reg.model(t), reg.model(s), objective, vmap, channel)) is not None]
    if not bad:
        return
    t, s, why = bad[0]
    more = f" (and {len(bad) - 1} more pair{'s' * (len(bad) > 2)})" if len(bad) > 1 else ""
    raise UserError(f"suite {suite.name}: pair {t} → {s}{more}: {why}; fix: set settings.student.objective: sft for "
                    f"cross-tokenizer pairs (copy the student recipe of {SFT_RECIPE}), set settings.student.vocab_map: "
                    "alphabet (numbers channel), or pair distill students only with teachers of their tokenizer "
                    "(registry key 'tokenizer' where two entries share one)")
