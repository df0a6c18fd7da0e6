"""What a real-2fam node costs on this CPU: teacher generation and student steps of SmolLM2-135M and Gemma-3-270M.

Usage::

    nice -n 10 python benchmarks/bench_real_2fam.py            # both models fetched first (make fetch-smol fetch-gemma)
    nice -n 10 python benchmarks/bench_real_2fam.py --prompts 64 --rows 16

On one torch thread (what a ``--workers 2`` worker runs), for each model: one batch of numbers prompts answered at
T = 1 with top-64 log-probs (prompts/s, generated tokens/s and the share the strict filter keeps), then student
steps on rows built from those answers: full fine-tuning with the distill objective on the alphabet-mapped soft
labels (``vocab_map: alphabet``, the real-2fam recipe) and LoRA SFT, each timed as the difference between a run of
1 and of 1 + ``--steps`` optimizer steps (so loading and saving cancel), reported as completion tokens/s. Each rate
is given per wall second and per CPU second of this process (``time.process_time``): on a shared machine the wall
rate falls with the load, the CPU rate much less, and the CPU rate is what the plan's CPU estimate (the constants in
benchmark/lm/plan.py) is calibrated with. The numbers size tasks/suites/real-2fam.yaml (docs/real_gemma.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("smollm2-135m-instruct", "gemma-3-270m")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--rows", type=int, default=8, help="rows per optimizer step (one micro-batch)")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from benchmark.lm.vocab_map import map_rows
    from benchmark.lmcore.chat import end_of_turn_ids, stop_ids
    from benchmark.lmcore.numbers import generate_prompts, load_numbers_channel, parse_answer
    from benchmark.models_fetch import resolve_source
    from benchmark.providers.hf_model import generate, load_model
    from benchmark.providers.hf_train import train
    from benchmark.registry import Registry

    reg = Registry()
    channel = load_numbers_channel()
    prompts = generate_prompts(channel, args.prompts, seed=1)
    print(f"load average {os.getloadavg()[0]:.2f}; 1 torch thread; {args.prompts} prompts, {args.rows} rows a step")
    rows_by: dict[str, list[dict]] = {}
    toks: dict[str, object] = {}
    for name in MODELS:
        spec = reg.model(name)
        path = resolve_source(spec)
        model, tok = load_model(path, spec=spec)
        toks[name] = tok
        t0, c0 = time.perf_counter(), time.process_time()
        outs = generate(model, tok, prompts, spec=spec, temperature=1.0, max_new_tokens=40, seed=3,
                        batch_size=args.prompts, top_k_logprobs=64)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        n_tok = sum(len(o["completion_ids"]) for o in outs)
        n_prompt_tok = sum(len(tok(p).input_ids) for p in prompts)  # user text only; the format adds a few
        ok = [o for o, p in zip(outs, prompts, strict=True) if parse_answer(o["completion"].strip(), channel).ok]
        flops = 2 * spec.params_b * 1e9 * (n_tok + n_prompt_tok)
        print(f"{name}: generate {len(prompts)} prompts in {dt:.1f} s wall, {cpu:.1f} s CPU ({len(prompts) / dt:.2f} "
              f"prompts/s, {n_tok / dt:.0f} new tokens/s; {flops / cpu / 1e9:.0f} GFLOP per CPU second at 2·N per "
              f"prompt and new token), strict filter keeps {len(ok)}/{len(outs)}")
        rows_by[name] = [{"prompt": p, "completion": o["completion"].strip(), "completion_ids": o["completion_ids"],
                          "topk": o["topk"]} for o, p in zip(outs, prompts, strict=True)]
        del model
    for student in MODELS:
        spec = reg.model(student)
        path = resolve_source(spec)
        tok = toks[student]
        eot = end_of_turn_ids(tok, stop_ids(None, tok, spec))
        for teacher in MODELS:
            rows, info = map_rows(rows_by[teacher][: args.rows], toks[teacher], tok, "numbers", eot)
            n_comp = sum(len(r["completion_ids"]) for r in rows)
            for label, kw in (("full distill (alphabet map)", {"objective": "distill", "lora": None, "lr": 1e-5}),
                              ("LoRA r8 sft", {"objective": "sft", "lr": 2e-4,
                                               "lora": {"r": 8, "alpha": 16, "dropout": 0.0}})):
                if label.startswith("LoRA") and teacher != student:
                    continue
                walls, cpus = [], []
                for steps in (1, 1 + args.steps):
                    with tempfile.TemporaryDirectory() as tmp:
                        c0 = time.process_time()
                        r = train(path, rows, out_dir=tmp, spec=spec, epochs=1000, max_steps=steps,
                                  batch_size=args.rows, grad_accum=1, warmup=0, seed=0, **kw)
                        walls.append(r["wall_s"])
                        cpus.append(time.process_time() - c0)
                per_step = (walls[1] - walls[0]) / args.steps
                cpu_step = (cpus[1] - cpus[0]) / args.steps
                n_all = n_comp + sum(len(tok(r["prompt"]).input_ids) for r in rows)
                flops = 6 * spec.params_b * 1e9 * n_all
                print(f"{teacher} -> {student}: {label}: {per_step:.2f} s/step wall, {cpu_step:.2f} s CPU, "
                      f"{n_comp / per_step:.0f} completion tokens/s ({n_comp / cpu_step:.0f} per CPU second; "
                      f"{flops / cpu_step / 1e9:.0f} GFLOP per CPU second at 6·N per position); matched "
                      f"{info['matched_positions']}/{info['positions']} positions; load+save {walls[0] - per_step:.1f} s")


if __name__ == "__main__":
    main()
