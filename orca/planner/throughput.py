"""Roofline-style throughput estimate: output tokens/s of one replica for a model, GPU, TP and PP.

One replica runs one engine on ``tp * pp`` GPUs. The estimate models vLLM-style continuous
batching in three limits:

- **KV-cache-limited batch**: sequences in flight ``B = min(max_batch, free_memory / kv_per_sequence)``,
  where free memory is ``gpus * memory * utilization - weights - per-GPU overhead`` and one sequence
  holds ``in + out`` tokens of KV cache. ``B < 1`` means the model does not fit (infeasible).
- **memory-bandwidth-bound decode**: one decode step reads the weights plus the batch's KV cache
  (average context ``in + out/2``) at ``gpus * bandwidth * bandwidth_efficiency``; it is never faster
  than the compute bound ``2 * params * B / (gpus * TFLOPS * mfu)``.
- **compute-bound prefill**: ``B * in`` prompt tokens at ``2 * params`` FLOPs each.

Tensor parallelism costs ``tp_efficiency[interconnect] ** log2(tp)`` (NVLink scales better than
PCIe) and pipeline parallelism a flat ``pp_efficiency``. The constants live in the catalog's
``throughput_model`` and were set so the estimate tracks vLLM at ~60% of the published
TensorRT-LLM numbers (see the catalog's ``calibration`` points and ``tests/unit/test_planner_throughput.py``
for the ratios; the offline points land within 0.9-1.4x, while online-serving measurements at limited concurrency sit 2.3-4.3x below the estimate).

Model shapes come from the catalog's table; unknown names fall back to the parameter count in the
name (``"(\\d+(\\.\\d+)?)[bB]"`` or ``...[mM]``) with the KV layout of the nearest known model,
scaled by the square root of the size ratio.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from orca.planner.catalog import Catalog, GpuSpec, ModelShape

_SIZE_B = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")
_SIZE_M = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[mM](?![a-zA-Z])")


def model_shape(model: str, catalog: Catalog) -> ModelShape | None:
    """Shape of a model: the catalog's entry (or its alias's), else one derived from the size in its name; None if unknown."""
    model = catalog.model_aliases.get(model, model)
    if model in catalog.models:
        return catalog.models[model]
    lowered = {k.lower(): v for k, v in catalog.models.items()}
    short = {k.split("/")[-1].lower(): v for k, v in catalog.models.items()}
    key = model.lower()
    if key in lowered:
        return lowered[key]
    if key.split("/")[-1] in short:
        return short[key.split("/")[-1]]
    name = model.split("/")[-1]
    m = _SIZE_B.search(name)
    params = float(m.group(1)) if m else None
    if params is None:
        m = _SIZE_M.search(name)
        params = float(m.group(1)) / 1000 if m else None
    if not params:
        return None
    nearest = min(catalog.models.values(), key=lambda s: abs(math.log(s.params_b / params)))
    scale = math.sqrt(params / nearest.params_b)
    return ModelShape(
        params_b=params,
        layers=max(1, round(nearest.layers * scale)),
        kv_heads=nearest.kv_heads,
        head_dim=nearest.head_dim,
    )


def model_params_b(model: str, catalog: Catalog) -> float | None:
    """Parameter count in billions, e.g. ``"meta-llama/Llama-3.1-8B-Instruct" -> 8.03``."""
    shape = model_shape(model, catalog)
    return shape.params_b if shape else None


@dataclass(frozen=True)
class Estimate:
    tokens_per_s: float   # output tokens/s of one replica
    batch: int            # sequences in flight
    weights_gb: float


def estimate(
    shape: ModelShape,
    gpu: GpuSpec,
    tp: int,
    pp: int,
    in_tokens: float,
    out_tokens: float,
    catalog: Catalog,
    weight_bytes: float = 2.0,
) -> Estimate | None:
    """Output tokens/s of one replica, or None when weights plus one sequence's KV cache do not fit."""
    tm = catalog.throughput
    n = tp * pp
    in_tokens = max(1.0, in_tokens)
    out_tokens = max(1.0, out_tokens)
    params = shape.params_b * 1e9
    weights = params * weight_bytes
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * weight_bytes
    free = n * (gpu.memory_gb * 1e9 * tm.gpu_memory_utilization - tm.overhead_gb_per_gpu * 1e9) - weights
    per_seq = kv_per_token * (in_tokens + out_tokens)
    if free <= 0 or free < per_seq:
        return None
    batch = int(min(tm.max_batch, free // per_seq))
    eff = tm.tp_efficiency.get(gpu.interconnect, 1.0) ** math.log2(tp) if tp > 1 else 1.0
    if pp > 1:
        eff *= tm.pp_efficiency
    bandwidth = n * gpu.bandwidth_tbps * 1e12 * tm.bandwidth_efficiency * eff
    flops = n * gpu.bf16_tflops * 1e12 * tm.mfu * eff
    step_mem = (weights + batch * kv_per_token * (in_tokens + out_tokens / 2)) / bandwidth
    step_compute = 2 * params * batch / flops
    step = max(step_mem, step_compute)
    prefill = batch * in_tokens * 2 * params / flops
    cycle = out_tokens * step + prefill
    return Estimate(tokens_per_s=batch * out_tokens / cycle, batch=batch, weights_gb=weights / 1e9)
