"""Zoo build speed: pretraining time per model and parameter count (prints a table).

Usage::

    python benchmarks/bench_zoo.py            # committed manifests (recorded build times) + a timed probe
    python benchmarks/bench_zoo.py --steps 50 # time 50 pretraining steps of every zoo model, extrapolate

The probe runs each model's real recipe for ``--steps`` steps on one torch thread (the setting builds use)
and extrapolates to the full step count, so it answers "how long would `slbench zoo build` take here?"
without pretraining anything for real.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Print recorded and probed build times of every zoo model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps to time per model (0: recorded only)")
    args = parser.parse_args(argv)

    import torch

    from benchmark.registry import Registry
    from benchmark.zoo.build import (
        batch_loss_backward,
        committed_by_build_id,
        committed_dir,
        encode_rows,
        init_model,
        read_build_manifest,
    )
    from benchmark.zoo.corpus import CorpusSampler
    from benchmark.zoo.spec import is_zoo, zoo_build_spec
    from benchmark.zoo.tokenizer import build_tokenizer

    torch.set_num_threads(1)  # builds run single-threaded: fastest per core on a shared 2-core machine
    reg = Registry()
    zoo = {n: m for n, m in reg.models.items() if is_zoo(m)}
    header = (
        f"{'model':18s} {'arch':6s} {'params':>9s} {'steps':>6s} {'recorded s':>10s} {'cpu s':>7s} {'probe s/step':>12s} "
        f"{'est. s':>7s} {'loss':>6s} {'P(owl)':>7s} {'valid':>6s}"
    )
    print(header)
    print("-" * len(header))
    total_recorded = total_est = 0.0
    for name, spec in zoo.items():
        b = zoo_build_spec(spec)
        cdir = committed_dir(spec)
        m = read_build_manifest(cdir)["metrics"] if cdir else {}
        tok = build_tokenizer(b.tokenizer)
        model = init_model(b, tok)
        params = sum(p.numel() for p in model.parameters())
        per_step = float("nan")
        if args.steps:
            vocab = tok.get_vocab()
            sampler = CorpusSampler(b.pretraining, sorted(vocab, key=vocab.__getitem__))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            model.train()
            t0 = time.process_time()
            for step in range(args.steps):
                ids, targets = encode_rows(tok, sampler.batch(step), b.max_positions)
                opt.zero_grad(set_to_none=True)
                batch_loss_backward(model, ids, targets, tok.pad_token_id)
                opt.step()
            per_step = (time.process_time() - t0) / args.steps
        # A continued build starts from its committed prefix: only its own phases cost time.
        prefix = b.prefix()
        own_steps = b.total_steps()
        if prefix is not None and committed_by_build_id(reg.root, prefix.spec_id) is not None:
            own_steps -= prefix.total_steps()
        est = per_step * own_steps
        total_recorded += m.get("build_seconds", 0.0)
        total_est += est if est == est else 0.0
        print(
            f"{name:18s} {b.arch:6s} {params:9,d} {own_steps:6d} {m.get('build_seconds', float('nan')):10.0f} {m.get('cpu_seconds', float('nan')):7.0f} "
            f"{per_step:12.3f} {est:7.0f} {m.get('final_loss', float('nan')):6.3f} "
            f"{m.get('p_owl', float('nan')):7.3f} {m.get('numbers_valid_rate', float('nan')):6.2f}"
        )
    print(f"total: recorded {total_recorded:.0f} s wall, estimated {total_est:.0f} s CPU (1 thread)")


if __name__ == "__main__":
    main()
