"""Speed of the hf backend: number generation (batched vs one prompt at a time, vLLM if present) and LoRA training.

Prints
  1. teacher-style number generation tokens/s of :func:`benchmark.providers.hf_model.generate` (batched, KV cache, left
     padding, per-row seeds) vs a one-prompt-at-a-time ``model.generate`` loop (the usual HF baseline), and
     their ratio (goal: >= 5x); with vLLM too when it is importable and a GPU is visible;
  2. LoRA training tokens/s of :func:`benchmark.providers.hf_train.train` and its model-FLOPs utilisation
     ``6 * N * tokens / time / peak`` (N = parameters in the matmuls, tokens = real tokens forwarded; LoRA skips
     the weight gradients of the frozen base, so 6N overstates the work by up to ~1/3: a conventional, not
     exact, MFU). On CPU, achieved GFLOP/s instead of MFU.

Weights are random (nothing is downloaded): throughput does not depend on what the weights say, only on the
shapes. With CUDA the real Qwen2.5-0.5B / 1.5B shapes are used (``--size 0.5b`` / ``1.5b``); on CPU a scaled-down
Qwen2 config (``--size cpu``), because the real 0.5B shape (151,936-token vocabulary, 24 layers) is too slow for
a 2-core box. Outputs are prompts' answers of random weights, so rows end at random EOS draws: tokens/s counts
the tokens actually generated.

Usage::

    python benchmarks/bench_hf.py                     # auto: --size 0.5b on a GPU, --size cpu otherwise
    python benchmarks/bench_hf.py --size 1.5b --prompts 512 --batch 256
    python benchmarks/bench_hf.py --peak-flops 1979e12   # e.g. H100 bf16 with sparsity; default 989e12 (dense)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Qwen2.5 shapes (config.json of Qwen/Qwen2.5-0.5B-Instruct and -1.5B-Instruct) and a CPU-sized one.
SHAPES = {
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True),
    "cpu": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=1024, vocab_size=8192, tie_word_embeddings=True),
}


def build_model_dir(size: str, out: Path) -> Path:
    """A random-init Qwen2 model of the given shape plus the tests' word-level ChatML tokenizer, saved to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from tests.lm_fixtures import VOCAB, make_tokenizer

    ids = {"pad_token_id": VOCAB.index("<pad>"), "eos_token_id": VOCAB.index("<|im_end|>"),
           "bos_token_id": VOCAB.index("<|im_end|>")}
    config = Qwen2Config(max_position_embeddings=4096, **SHAPES[size], **ids)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    make_tokenizer().save_pretrained(out)
    return out


def n_matmul_params(model) -> int:
    """Parameters that take part in matmuls (tied input/output embeddings counted once, as the LM head)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_generation(model_dir: Path, prompts: list[str], batch: int, new_tokens: int, loop_prompts: int) -> None:
    import torch

    from benchmark.lmcore.chat import render_prompt
    from benchmark.providers.hf_model import generate, load_model

    model, tok = load_model(model_dir)
    dev = next(model.parameters()).device
    print(f"generation: {len(prompts)} number prompts, up to {new_tokens} new tokens, T=1, "
          f"{dev.type} {next(model.parameters()).dtype}")
    generate(model, tok, prompts[:4], temperature=1.0, max_new_tokens=4, batch_size=4)  # warm-up
    _sync()
    t0 = time.perf_counter()
    outs = generate(model, tok, prompts, temperature=1.0, max_new_tokens=new_tokens, seed=0, batch_size=batch)
    _sync()
    wall = time.perf_counter() - t0
    n_tok = sum(len(o["completion_ids"]) for o in outs)
    batched = n_tok / wall
    print(f"  hf_model.generate (batch {batch}): {n_tok} tokens in {wall:.2f} s = {batched:,.0f} tokens/s")

    # The usual baseline: one prompt at a time through model.generate (KV cache, sampling, no truncation).
    sub = prompts[:loop_prompts]
    t0 = time.perf_counter()
    n_loop = 0
    with torch.inference_mode():
        for p in sub:
            ids = tok(render_prompt(tok, p), add_special_tokens=False, return_tensors="pt").input_ids.to(dev)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                 top_k=0, top_p=1.0, max_new_tokens=new_tokens, pad_token_id=tok.pad_token_id)
            n_loop += out.shape[1] - ids.shape[1]
    _sync()
    wall_loop = time.perf_counter() - t0
    loop = n_loop / wall_loop
    print(f"  model.generate one prompt at a time ({len(sub)} prompts): {n_loop} tokens in {wall_loop:.2f} s "
          f"= {loop:,.0f} tokens/s")
    print(f"  batched / one-at-a-time: {batched / loop:.1f}x (goal >= 5x)")

    from benchmark.providers import vllm

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        del model
        torch.cuda.empty_cache()
        vllm.generate_vllm(model_dir, prompts[:4], max_new_tokens=4, tokenizer=tok)  # engine start
        t0 = time.perf_counter()
        vouts = vllm.generate_vllm(model_dir, prompts, max_new_tokens=new_tokens, seed=0, tokenizer=tok)
        wall_v = time.perf_counter() - t0
        n_v = sum(len(o["completion_ids"]) for o in vouts)
        print(f"  vLLM: {n_v} tokens in {wall_v:.2f} s = {n_v / wall_v:,.0f} tokens/s "
              f"({n_v / wall_v / batched:.1f}x hf_model.generate)")
    else:
        print("  vLLM: not measured (vllm is not importable or no CUDA device is visible)")


def bench_training(model_dir: Path, prompts: list[str], steps: int, batch: int, peak: float) -> None:
    import random

    from benchmark.lmcore.chat import render_prompt
    from benchmark.providers.hf_model import load_model
    from benchmark.providers.hf_train import train

    model, tok = load_model(model_dir)
    n_params = n_matmul_params(model)
    on_gpu = next(model.parameters()).is_cuda
    del model
    rng = random.Random(0)
    rows = [{"prompt": p, "completion": ", ".join(str(rng.randint(10, 99)) for _ in range(rng.randint(5, 10)))}
            for p in prompts]
    lengths = [len(tok(render_prompt(tok, r["prompt"]) + r["completion"], add_special_tokens=False).input_ids) + 1
               for r in rows]
    tok_per_example = sum(lengths) / len(lengths)
    common = dict(batch_size=batch, grad_accum=1, warmup=0, epochs=1000, lr=2e-4, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        # Two runs, 1 step and 1 + steps: the difference is pure training (no load / save / first-step overhead).
        _sync()
        short = train(model_dir, rows, out_dir=Path(tmp) / "a", max_steps=1, **common)
        long = train(model_dir, rows, out_dir=Path(tmp) / "b", max_steps=1 + steps, **common)
    wall = long["wall_s"] - short["wall_s"]
    tokens = steps * batch * tok_per_example
    tps = tokens / wall
    flops = 6 * n_params * tps
    print(f"LoRA training (r=8 on all linear layers, batch {batch}, {steps} steps, ~{tok_per_example:.0f} "
          f"tokens/example, N = {n_params / 1e6:.1f} M params, {long['device']} {long['dtype']}):")
    print(f"  {tokens:,.0f} tokens in {wall:.2f} s = {tps:,.0f} tokens/s")
    if on_gpu:
        print(f"  MFU (6·N·tokens/s / peak {peak / 1e12:.0f} TFLOP/s): {flops / peak:.1%}")
    else:
        print(f"  achieved {flops / 1e9:.1f} GFLOP/s (6·N·tokens/s; CPU: no MFU against a GPU peak)")


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=[*SHAPES, "auto"], default="auto")
    ap.add_argument("--prompts", type=int, default=None, help="number prompts (default 512 GPU / 64 CPU)")
    ap.add_argument("--batch", type=int, default=None, help="generation batch (default 256 GPU / 64 CPU)")
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--loop-prompts", type=int, default=None, help="prompts for the one-at-a-time baseline")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--train-batch", type=int, default=None)
    ap.add_argument("--peak-flops", type=float, default=989e12, help="GPU peak FLOP/s for MFU (H100 bf16 dense)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = ap.parse_args()

    gpu = torch.cuda.is_available()
    size = args.size if args.size != "auto" else ("0.5b" if gpu else "cpu")
    torch.set_num_threads(args.threads)
    n_prompts = args.prompts or (512 if gpu else 64)
    batch = args.batch or (256 if gpu else 64)
    loop_prompts = args.loop_prompts or (32 if gpu else 8)
    steps = args.train_steps or (10 if gpu else 3)
    train_batch = args.train_batch or (32 if gpu else 8)
    print(f"bench_hf: Qwen2 shape {size!r} {SHAPES[size]}, random init, "
          f"{'CUDA ' + torch.cuda.get_device_name() if gpu else f'CPU, {args.threads} thread(s)'}")

    from benchmark.lmcore.numbers import generate_prompts, load_numbers_channel

    channel = load_numbers_channel(ROOT / "tasks" / "channels" / "numbers.yaml")
    prompts = generate_prompts(channel, n_prompts, 0)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(size, Path(tmp) / "model")
        bench_generation(model_dir, prompts, batch, args.new_tokens, loop_prompts)
        bench_training(model_dir, prompts, steps, train_batch, args.peak_flops)


if __name__ == "__main__":
    main()
