"""Every Eval Ever 0.3.0 records of a results bundle (``slbench export SUITE --format eee``).

Every Eval Ever (EEE, the ``every-eval-ever`` package's ``schemas/eval.schema.json``, version 0.3.0) stores one
aggregate record per evaluated model: one ``model_info`` and a list of ``evaluation_results``. A suite here
evaluates pairs: a student trained on a teacher's data, read out on the suite's trait prompts. So each student
model gets one record, holding every pair row of the pair table (``pairs.csv``) in which it is the student, A/A
placebo rows included: the pair's effect as the score, its 95 % CI, the number of treated replicates, and p, q,
p_drift, q_drift and the transfer ratio as details. The suite's primary γ (``fit.json`` ``primary``) is a claim
about the whole matrix, not one model, so it travels as the suite context in every record's
``source_metadata.additional_details``. docs/leaderboard.md ("Every Eval Ever 0.3.0") lists every field and what
is left out.

The records are written beside the bundle as ``eee/data/<collection>/<developer>/<model>/<uuid>.json``, the
datastore layout EEE's validator checks; the UUID (version-4 form) is derived from the record's
``evaluation_id``, and ``retrieved_timestamp`` is the report's start, so exporting twice gives the same bytes.
Built from a :class:`~benchmark.bundle.schema.Bundle` alone: no store, no EEE package (it needs Python >= 3.12);
the tests validate the records offline against the official schema file kept in ``tests/data/eee/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from typing import Any, Final

from benchmark.bundle.schema import Bundle, CellResult, ModelInfo
from benchmark.providers.base import requirements

__all__ = ["EEE_COLLECTION", "EEE_DIR", "EEE_SCHEMA_VERSION", "eee_files", "eee_records", "record_bytes"]

#: The Every Eval Ever schema version the records follow.
EEE_SCHEMA_VERSION: Final = "0.3.0"
#: Folder beside ``bundle.json`` that holds the records (an EEE datastore tree: ``data/...``).
EEE_DIR: Final = "eee"
#: The datastore collection (the benchmark); the suite is part of each record's ``evaluation_id``.
EEE_COLLECTION: Final = "subliminal-bench"
#: The unit of a pair's effect by readout (the effect is a difference of the readout's means).
_UNIT = {"logodds": "log-odds", "accuracy": "percentage points"}
#: Bounds of a pair's effect by readout: a difference of two accuracies in percent lies in [-100, 100].
_BOUNDS: dict[str, tuple[float | str, float | str]] = {"accuracy": (-100.0, 100.0)}
_UNBOUNDED: Final = ("-Infinity", "Infinity")
_UNSAFE = re.compile(r'[<>:"\\|?*\x00-\x1f]')


def eee_records(bundle: Bundle) -> dict[str, dict[str, Any]]:
    """One EEE record per student of the suite, by its datastore path (``data/<collection>/<dev>/<model>/<uuid>.json``).

    Pair rows without an estimate (a null effect: EEE requires a number) are left out and named in the record's
    ``source_metadata.additional_details.pairs_without_estimate``.
    """
    by_name = {m.name: m for m in bundle.models}
    out: dict[str, dict[str, Any]] = {}
    for model in bundle.models:
        if "student" not in model.roles:
            continue
        rows = [c for c in bundle.evaluation_results if c.student == model.name]
        record = _record(bundle, model, rows, by_name)
        developer, name = _path_parts(record["model_info"]["id"], record["model_info"].get("developer"))
        file_id = uuid.UUID(bytes=hashlib.sha256(record["evaluation_id"].encode("utf-8")).digest()[:16], version=4)
        out[f"data/{EEE_COLLECTION}/{developer}/{name}/{file_id}.json"] = record
    return out


def record_bytes(record: dict[str, Any]) -> bytes:
    """A record's file: indented JSON (strict: no NaN), one final newline."""
    return (json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def eee_files(bundle: Bundle) -> dict[str, bytes]:
    """The files to write beside the bundle, by path relative to its folder (``eee/data/...``)."""
    return {f"{EEE_DIR}/{path}": record_bytes(rec) for path, rec in eee_records(bundle).items()}


def _record(bundle: Bundle, model: ModelInfo, rows: list[CellResult], by_name: dict[str, ModelInfo]) -> dict[str, Any]:
    retrieved = str(int(datetime.fromisoformat(bundle.evaluation_timestamp).timestamp()))
    info = _model_info(model)
    kept = [c for c in rows if c.score_details.score is not None]
    context = _suite_context(bundle)
    left_out = [c.evaluation_name for c in rows if c.score_details.score is None]
    if left_out:
        context["pairs_without_estimate"] = ", ".join(left_out)
    src = bundle.source_metadata
    source_metadata: dict[str, Any] = {
        "source_name": src.source_name, "source_type": src.source_type,
        "source_organization_name": src.source_organization_name,
        "evaluator_relationship": src.evaluator_relationship,
        "additional_details": {**src.additional_details, **context},
    }
    if src.source_organization_url:
        source_metadata["source_organization_url"] = src.source_organization_url
    lib = bundle.eval_library
    return {
        "schema_version": EEE_SCHEMA_VERSION,
        "evaluation_id": f"{EEE_COLLECTION}-{bundle.suite.name}/{info['id']}/{retrieved}",
        "evaluation_timestamp": bundle.evaluation_timestamp,
        "retrieved_timestamp": retrieved,
        "source_metadata": source_metadata,
        "eval_library": {"name": lib.name, "version": lib.version,
                         "additional_details": {**lib.additional_details, **_strings(bundle.evaluator_versions)}},
        "model_info": info,
        "evaluation_results": [_result(bundle, c, by_name) for c in kept],
    }


def _model_info(model: ModelInfo) -> dict[str, Any]:
    reqs = requirements(model.provider)  # who deploys the models and whether their weights are public (EEE needs both)
    details = {"deployment_type": "unknown" if reqs is None else
               "self_deployed" if reqs.open_weights else "externally_managed",
               "model_availability": "unknown" if reqs is None else
               "open_weights" if reqs.open_weights else "closed_weights",
               "registry_name": model.name, "family": model.family, "provider": model.provider,
               "revision": model.revision, "lineage_init": model.lineage_init, "lineage_parent": model.lineage_parent,
               "registry_entry_sha256": model.entry_hash,
               "weights_file": model.weights.file if model.weights else None,
               "weights_sha256": model.weights.sha256 if model.weights else None}
    info: dict[str, Any] = {"name": model.name, "id": model.id}
    developer = model.developer or (model.id.split("/", 1)[0] if "/" in model.id else reqs.developer if reqs else None)
    if developer:
        info["developer"] = developer
    if model.inference_platform:
        info["inference_platform"] = model.inference_platform
    engine = {"name": model.inference_engine.name}
    if model.inference_engine.version:
        engine["version"] = model.inference_engine.version
    info["inference_engine"] = engine
    info["additional_details"] = _strings(details)
    return info


def _suite_context(bundle: Bundle) -> dict[str, str]:
    """The suite, its report and its primary γ: the same in every record of the suite."""
    gamma = bundle.shared_base
    ci = gamma.uncertainty.confidence_interval
    primary = bundle.data.fit.get("primary")
    alternative = primary.get("alternative") if isinstance(primary, dict) else None
    return _strings({
        "suite": bundle.suite.name, "track": bundle.suite.track, "report_id": bundle.suite.report_id,
        "bundle_evaluation_id": bundle.evaluation_id, "bundle_file": "bundle.json",
        "bundle_schema_version": bundle.schema_version,
        "run_fingerprint": bundle.dedupe_identity.run_fingerprint,
        "bundle_content_hash": bundle.dedupe_identity.content_hash,
        "git_commit": bundle.provenance.git_commit,
        "shared_base_gamma": gamma.gamma, "shared_base_gamma_ci_lower": ci.lower,
        "shared_base_gamma_ci_upper": ci.upper, "shared_base_gamma_confidence_level": ci.confidence_level,
        "shared_base_gamma_p_value": gamma.p_value, "shared_base_gamma_alternative": alternative,
        "shared_base_gamma_method": gamma.method, "shared_base_indicator": gamma.indicator,
        "shared_base_num_pairs": gamma.uncertainty.num_samples,
        "shared_base_gamma_leave_one_base_out_min": gamma.leave_one_base_out_min,
        "shared_base_gamma_leave_one_base_out_max": gamma.leave_one_base_out_max,
        "placebo_rate": gamma.placebo_rate, "placebo_exact_size": gamma.placebo_exact_size,
    })


def _result(bundle: Bundle, cell: CellResult, by_name: dict[str, ModelInfo]) -> dict[str, Any]:
    metric = bundle.metric_config.metric
    low, high = _BOUNDS.get(metric, _UNBOUNDED)
    score = cell.score_details
    ci = score.uncertainty.confidence_interval
    uncertainty: dict[str, Any] = {"num_samples": score.uncertainty.num_samples}
    if ci.lower is not None and ci.upper is not None:
        uncertainty["confidence_interval"] = {"lower": ci.lower, "upper": ci.upper,
                                              "confidence_level": ci.confidence_level, "method": ci.method}
    teacher = by_name.get(cell.teacher)
    gen = bundle.generation_config.generation_args
    data_details: dict[str, Any] = {"suite": bundle.suite.name, "teacher": cell.teacher,
                    "teacher_model_id": teacher.id if teacher else None, "readout": metric}
    if gen is not None:
        data_details.update({"teacher_data_channel": gen.prompt_template, "teacher_data_temperature": gen.temperature,
                             "teacher_data_top_k_logprobs": gen.top_k, "teacher_data_max_tokens": gen.max_tokens})
    kind = "placebo_effect" if cell.placebo else "pair_effect"
    return {
        "evaluation_result_id": f"{bundle.evaluation_id}/{cell.evaluation_name}",
        "evaluation_name": cell.evaluation_name,
        "source_data": {"dataset_name": f"{EEE_COLLECTION}/{bundle.suite.name}", "source_type": "other",
                        "additional_details": _strings(data_details)},
        "metric_config": {
            "evaluation_description": bundle.metric_config.evaluation_description,
            "metric_id": f"{EEE_COLLECTION}.{kind}",
            "metric_name": "A/A placebo effect" if cell.placebo else "Transfer effect (treated minus control arm)",
            "metric_kind": "effect_size", "metric_unit": _UNIT.get(metric, metric),
            "lower_is_better": bundle.metric_config.lower_is_better, "score_type": "continuous",
            "min_score": low, "max_score": high,
        },
        "score_details": {
            "score": score.score,
            "details": _strings({"teacher": cell.teacher, "student": cell.student, "trait": cell.trait,
                                 "relation": cell.relation, "family": cell.family, "placebo": cell.placebo,
                                 "p_value": score.p_value, "q_value": score.q_value, "p_drift": score.p_drift,
                                 "q_drift": score.q_drift, "transfer_ratio": cell.transfer_ratio}),
            "uncertainty": uncertainty,
        },
    }


def _strings(values: dict[str, Any]) -> dict[str, str]:
    """EEE ``additional_details``: string values only; None left out, floats as their shortest round-trip text."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _path_parts(model_id: str, developer: str | None) -> tuple[str, str]:
    """The datastore's developer and model folders of a model id: the id's ``org/`` prefix (else ``developer``),
    the rest with ``/`` as ``_``; ``:`` (API fine-tune ids) becomes ``_`` as in EEE's own layout."""
    parts = model_id.split("/")
    dev, rest = (parts[0], parts[1:]) if len(parts) > 1 else (developer or "unknown", parts)
    names = [_UNSAFE.sub("_", p.replace(":", "_")) for p in (dev, "_".join(rest))]
    return names[0], names[1]
