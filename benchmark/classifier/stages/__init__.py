"""The classifier track's stages, one module each (base, teacher, dataset, student, report), named like the LM
track's; each is ``run(ctx: StageContext) -> dict``.

Payloads (all tensors carry a leading seed dimension in the order of ``spec["seeds"]``):

* base:    ``params.pt`` (initial tensors), ``meta.json`` (build, image shape, seeds), ``metrics.json``
* teacher: ``params.pt`` (trained tensors), ``meta.json``, ``metrics.json`` (accuracy, loss curve)
* dataset: ``targets.pt`` (teacher logits on the noise stream, (S, steps, batch, 10+m)), ``meta.json``
* student: ``params.pt`` (unless ``save_weights`` is off), ``metrics.json`` (accuracy, loss curve)
* report:  the shared report files (tidy.csv, cells.csv, matrix.csv, heatmaps, report.md, index.html)

Torch is imported inside the functions so that planning never imports it.
"""

