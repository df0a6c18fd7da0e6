"""The LM track's stages, one module each: base, teacher, dataset, student, eval, report.

Each stage is a function ``run(ctx: StageContext) -> dict`` that reads its upstream nodes' directories, writes
its payload into ``ctx.out`` and returns the manifest's ``result`` block. Heavy imports (torch, transformers,
lm-eval) happen inside the functions, so planning stays light.
"""
