"""The bundled GPU catalog: instance types, prices per market and region, serverless offers, model shapes.

The data lives in ``orca/planner/data/catalog.json`` (versioned, with a ``sources`` field naming
where every number comes from). :func:`load_catalog` reads it once; when SkyPilot's catalog CSVs
are on disk (``~/.sky/catalogs/<version>/aws/vms.csv``), :func:`load_catalog(refresh=True)`
replaces and extends the AWS prices from them without importing ``sky`` (see
:mod:`orca.planner.skypilot_prices`). Stdlib only, so ``orca plan`` stays fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
CATALOG_PATH = DATA_DIR / "catalog.json"


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: float
    bandwidth_tbps: float
    bf16_tflops: float
    interconnect: str  # "nvlink" | "pcie" | "none"


@dataclass(frozen=True)
class RegionPrice:
    region: str
    on_demand: float | None
    spot: float | None


@dataclass(frozen=True)
class Instance:
    instance_type: str
    gpu: str
    gpus: int
    prices: tuple[RegionPrice, ...]


@dataclass(frozen=True)
class ServerlessOffer:
    provider: str
    cold_start_s: float
    gpu_counts: tuple[int, ...]
    gpu_hour: dict[str, float]


@dataclass(frozen=True)
class ModelShape:
    params_b: float
    layers: int
    kv_heads: int
    head_dim: int
    context_length: int | None = None  # prompt plus output tokens one request may use (max_position_embeddings)


@dataclass(frozen=True)
class ThroughputModel:
    gpu_memory_utilization: float
    overhead_gb_per_gpu: float
    max_batch: int
    bandwidth_efficiency: float
    mfu: float
    tp_efficiency: dict[str, float]
    pp_efficiency: float


@dataclass(frozen=True)
class Catalog:
    version: str
    sources: dict[str, str]
    gpus: dict[str, GpuSpec]
    instances: tuple[Instance, ...]
    serverless: tuple[ServerlessOffer, ...]
    local_gpu: str
    models: dict[str, ModelShape]
    throughput: ThroughputModel
    calibration: tuple[dict, ...] = field(default=())
    model_aliases: dict[str, str] = field(default_factory=dict)  # served name -> catalog model (e.g. the CPU engine's "smollm2")


def catalog_from_dict(d: dict) -> Catalog:
    """Build a :class:`Catalog` from the JSON layout of ``catalog.json``."""
    gpus = {name: GpuSpec(name=name, **spec) for name, spec in d["gpus"].items()}
    instances = tuple(
        Instance(
            instance_type=i["instance_type"],
            gpu=i["gpu"],
            gpus=int(i["gpus"]),
            prices=tuple(
                RegionPrice(region=r, on_demand=p.get("on_demand"), spot=p.get("spot"))
                for r, p in sorted(i["prices"].items())
            ),
        )
        for i in d["instances"]
    )
    serverless = tuple(
        ServerlessOffer(
            provider=s["provider"],
            cold_start_s=float(s["cold_start_s"]),
            gpu_counts=tuple(s["gpu_counts"]),
            gpu_hour=dict(s["gpu_hour"]),
        )
        for s in d["serverless"]
    )
    models = {name: ModelShape(**m) for name, m in d["models"].items()}
    tm = d["throughput_model"]
    return Catalog(
        version=str(d["version"]),
        sources=dict(d["sources"]),
        gpus=gpus,
        instances=instances,
        serverless=serverless,
        local_gpu=d["local"]["gpu"],
        models=models,
        throughput=ThroughputModel(**tm),
        calibration=tuple(d.get("calibration", ())),
        model_aliases=dict(d.get("model_aliases", {})),
    )


def context_length(model: str, catalog: Catalog | None = None) -> int | None:
    """The model's context length (prompt plus output tokens of one request), or None if the catalog does not know it."""
    catalog = catalog or load_catalog()
    shape = catalog.models.get(catalog.model_aliases.get(model, model))
    return shape.context_length if shape is not None else None


@lru_cache(maxsize=4)
def load_catalog(path: str | None = None, refresh: bool = False) -> Catalog:
    """The bundled catalog (or the one at ``path``); ``refresh`` merges SkyPilot's local AWS CSV if present."""
    raw = json.loads(Path(path or CATALOG_PATH).read_text())
    catalog = catalog_from_dict(raw)
    if refresh:
        from orca.planner.skypilot_prices import refresh_from_skypilot

        catalog = refresh_from_skypilot(catalog)
    return catalog
