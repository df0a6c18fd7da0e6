"""No code outside ``benchmark/providers/`` branches on a provider's name (issue 23, item 5).

What a provider can do is its :class:`~benchmark.providers.base.Capabilities`, what it asks of its registry entries
and what records say of its models its :class:`~benchmark.providers.base.Requirements`; both are declared by its
backend. So outside ``providers/`` a ``provider`` value is never compared (``==``, ``!=``, ``in (...)``, ``is``, a
``match``) nor used to look up a table of provider facts (``TABLE[x.provider]``, ``TABLE.get(x.provider)``). Only
:data:`benchmark.specs.BUILD_SPECS`, the plug-in table that names each provider's build-block class (like
``BACKENDS`` and ``TRACKS``), is looked up by provider, in ``specs.py``. Found by the syntax tree, so line breaks and
parentheses do not hide one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from benchmark.providers.base import BACKENDS, OTHER_PROVIDERS, providers_where, requirements
from benchmark.specs import BUILD_SPECS, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
#: (file, table) lookups by provider allowed outside providers/: the provider plug-in tables.
ALLOWED_LOOKUPS = {("benchmark/specs.py", "BUILD_SPECS")}


def _is_provider(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "provider") or (
        isinstance(node, ast.Name) and node.id == "provider")


def provider_branches(source: str, path: str) -> list[str]:
    """``path:line: code`` of every comparison of, ``match`` on, or table lookup by a ``provider`` value."""
    found = []
    for node in ast.walk(ast.parse(source, path)):
        table = None
        if isinstance(node, ast.Compare):
            hit = any(_is_provider(x) for x in [node.left, *node.comparators])
        elif isinstance(node, ast.Match):
            hit = _is_provider(node.subject)
        elif isinstance(node, ast.Subscript):
            hit, table = _is_provider(node.slice), node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            hit, table = bool(node.args) and _is_provider(node.args[0]), node.func.value
        else:
            continue
        name = ast.unparse(table) if table is not None else ""
        if hit and (path, name) not in ALLOWED_LOOKUPS:
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found


def test_the_check_finds_every_form() -> None:
    src = ("a = spec.provider == 'hf'\nb = m.provider in ('zoo',\n  'classifier')\nc = 'x' != provider\n"
           "d = TABLE[model.provider]\ne = TABLE.get(model.provider, 'unknown')\nf = x.provider not in {'hf'}\n"
           "match spec.provider:\n    case 'hf':\n        pass\n"
           "ok = f'{spec.provider}'\nok2 = dict(provider=spec.provider)\nok3 = requirements(spec.provider)\n")
    lines = sorted(line.split(":")[1] for line in provider_branches(src, "x.py"))
    assert lines == ["1", "2", "4", "5", "6", "7", "8"]  # b spans lines 2-3; the ok lines are not branches


def test_no_provider_branch_outside_providers() -> None:
    found = []
    for path in sorted((ROOT / "benchmark").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith("benchmark/providers/"):
            found += provider_branches(path.read_text(encoding="utf-8"), rel)
    assert not found, ("provider names are compared outside benchmark/providers/ (declare the fact in the backend's "
                       "Capabilities or Requirements instead):\n" + "\n".join(found))


@pytest.mark.parametrize("provider", ModelSpec.model_fields["provider"].annotation.__args__)
def test_every_provider_declares_its_requirements(provider: str) -> None:
    reqs = requirements(provider)
    assert reqs is not None, f"provider {provider!r} has no Requirements"
    assert provider in BACKENDS or provider in OTHER_PROVIDERS
    assert reqs.build == (provider in BUILD_SPECS), "a build block is needed exactly where BUILD_SPECS validates one"


def test_requirements_keep_the_published_facts() -> None:
    """The facts the registry checks and bundles record, as they were when each was a table keyed by name (every
    published bundle.json and eee/ record depends on them)."""
    got = {p: requirements(p) for p in ("zoo", "hf", "openai", "classifier")}
    assert {p: r.engine for p, r in got.items() if r} == {"zoo": "transformers", "hf": "transformers",
                                                          "openai": "openai", "classifier": "torch"}
    assert {p: r.open_weights for p, r in got.items() if r} == {"zoo": True, "hf": True, "openai": False,
                                                                "classifier": True}
    assert {p: r.developer for p, r in got.items() if r} == {"zoo": "subliminal-bench", "hf": None,
                                                             "openai": "openai", "classifier": "subliminal-bench"}
    assert sorted(p for p, r in got.items() if r and r.source) == ["hf", "openai"]
    assert providers_where(lambda r: r.checkpoint_sources) == ["hf"]
    assert requirements("no-such-provider") is None
