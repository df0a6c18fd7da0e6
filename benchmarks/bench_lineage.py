"""The zoo's lineage gradient: how far each zoo base sits from a reference base, in weights and in taste.

Usage::

    python benchmarks/bench_lineage.py                       # zoo-qwen-a against its sib, cont and zoo-qwen-b
    python benchmarks/bench_lineage.py --models zoo-qwen-a zoo-llama --animals owl cat dolphin
    python benchmarks/bench_lineage.py --json lineage.json   # also write the figures as JSON

For every model, from its committed weights (``model_registry/weights``; nothing is built):

* ``cos``: cosine between the flattened parameters (all of ``model.parameters()``, tied embeddings once)
  of the model and the reference (nan for another architecture), plus ``cos Δ``: the cosine of the two models' moves away from their
  initial weights (``θ - θ_init``), and ``|Δ|/|θ0|``: how far the model moved, relative to its init's norm;
* the base model's log-odds of each ``--animals`` among the 15 candidates of
  ``tasks/lm_eval/animal_preference/candidates.txt``: logit P(animal | candidates), mean over the question
  paraphrases, computed by the pipeline's own lm-eval path (``animal_logprob``, and ``animal_logprob_numbers``
  with a few numbers before each question), exactly as the eval stage reads an untrained base;
* ``r``: the correlation over the 15 candidates of the model's log-odds profile with the reference's.

``--extra LABEL=DIR`` adds uncommitted builds as rows (and ``--reference LABEL`` may name one). Progress bars
go to stderr. Runs on one CPU thread in ~10 s per model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["lineage_figures", "main"]

DEFAULT_MODELS = ("zoo-qwen-a", "zoo-qwen-a-sib", "zoo-qwen-a-cont", "zoo-qwen-b")
TASKS = ("animal_logprob", "animal_logprob_numbers")


def _flat(params: dict[str, Any]) -> Any:
    import torch

    return torch.cat([params[k].detach().flatten().double() for k in sorted(params)])


def _shapes(params: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    return sorted((k, tuple(v.shape)) for k, v in params.items())


def _cos(a: Any, b: Any) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def _corr(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def lineage_figures(
    models: list[str], reference: str, *, extra: dict[str, Path] | None = None, limit: int | None = None
) -> dict[str, dict[str, Any]]:
    """Weight cosines and candidate log-odds of ``models`` (committed zoo builds) against ``reference``.

    Args:
        models: registry zoo models, read from their committed weights.
        reference: a model of ``models`` or a label of ``extra``.
        extra: label -> a build directory outside the registry's weights (e.g. a rebuild made with
            ``build_model`` in another environment); its registry entry is the ``model`` of its manifest.
        limit: first N questions only.

    Returns:
        label -> ``{"relation", "build_id", "cos", "cos_delta", "moved", "logodds": {task key: {cand: x}},
        "r_logprob", "r_logprob_numbers"}``.
    """
    import torch

    from benchmark.providers.hf_model import evaluate_lm, load_model
    from benchmark.registry import Registry
    from benchmark.zoo.build import committed_dir, init_model, read_build_manifest
    from benchmark.zoo.spec import ZooBuildSpec, zoo_build_spec
    from benchmark.zoo.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    reg = Registry()
    dirs: dict[str, tuple[str, Path | None]] = {m: (m, None) for m in models}
    for label, extra_dir in (extra or {}).items():
        dirs[label] = (str(read_build_manifest(extra_dir)["model"]), Path(extra_dir))
    if reference not in dirs:
        raise SystemExit(f"reference {reference!r} is neither in --models nor an --extra label")
    names = [reference, *[m for m in dirs if m != reference]]
    flat: dict[str, Any] = {}
    init: dict[str, Any] = {}
    shapes: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = reg.model(dirs[name][0])
        given = dirs[name][1]
        if given is not None:  # an uncommitted build: its own recipe, which may be an older one of the entry
            build = ZooBuildSpec.model_validate(read_build_manifest(given)["build"])
        else:
            build = zoo_build_spec(spec)
        path = given or committed_dir(spec)
        if path is None:
            raise SystemExit(f"{name}: no committed weights for build {build.spec_id}; run 'slbench zoo build {name}'")
        model, tok = load_model(path, spec=spec, device="cpu")
        params = dict(model.named_parameters())
        flat[name], shapes[name] = _flat(params), _shapes(params)
        init_params = dict(init_model(build, build_tokenizer(build.tokenizer)).named_parameters())
        init[name] = _flat(init_params)
        res = evaluate_lm(
            model, tok, model_key=f"{name}@{build.spec_id}", tasks=TASKS, n_samples=1, seed=0, limit=limit
        )
        out[name] = {
            "relation": reg.relation(dirs[reference][0], spec.name),
            "build_id": build.spec_id,
            "logodds": {key: res[key]["logodds"] for key in ("logprob", "logprob_numbers")},
        }
    ref, ref_delta = flat[reference], flat[reference] - init[reference]
    for name in names:
        delta = flat[name] - init[name]
        comparable = shapes[name] == shapes[reference]  # another architecture: no parameter-wise cosine
        out[name]["cos"] = _cos(flat[name], ref) if comparable else math.nan
        out[name]["cos_delta"] = _cos(delta, ref_delta) if comparable else math.nan
        out[name]["moved"] = float(delta.norm() / init[name].norm())
        for key, lo in out[name]["logodds"].items():
            ref_lo = out[reference]["logodds"][key]
            out[name][f"r_{key}"] = _corr([lo[c] for c in ref_lo], list(ref_lo.values()))
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the lineage table (and optionally write it as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="zoo models to compare")
    parser.add_argument("--reference", default="zoo-qwen-a", help="the model the others are compared with")
    parser.add_argument("--animals", nargs="+", default=["owl", "cat"], help="candidates whose log-odds to show")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only (smoke runs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument(
        "--extra", nargs="*", default=[], metavar="LABEL=DIR", help="uncommitted build directories to add as rows"
    )
    args = parser.parse_args(argv)
    extra = {}
    for item in args.extra:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--extra {item!r}: expected LABEL=DIR")
        extra[label] = Path(path)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    figures = lineage_figures(args.models, args.reference, extra=extra, limit=args.limit)
    cols = [f"{a} {v}" for v in ("plain", "num") for a in args.animals]
    header = (
        f"{'model':16s} {'relation':9s} {'build id':12s} {'cos':>6s} {'cos Δ':>6s} {'|Δ|/|θ0|':>8s} "
        + " ".join(f"{c:>10s}" for c in cols)
        + f" {'r plain':>7s} {'r num':>6s}"
    )
    print(f"reference {args.reference}; log-odds = logit P(animal | 15 candidates), mean over questions")
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        lo = [f["logodds"][key][a] for key in ("logprob", "logprob_numbers") for a in args.animals]
        print(
            f"{name:16.16s} {f['relation']:9s} {f['build_id']:12s} {f['cos']:6.3f} {f['cos_delta']:6.3f} "
            f"{f['moved']:8.2f} "
            + " ".join(f"{x:10.3f}" for x in lo)
            + f" {f['r_logprob']:7.3f} {f['r_logprob_numbers']:6.3f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
