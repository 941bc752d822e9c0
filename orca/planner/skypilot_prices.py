"""Optional live price refresh from SkyPilot's catalog CSVs, read from disk without importing ``sky``.

Only ``orca/launchers/skypilot.py`` may import sky, so this module reads the CSV files SkyPilot
caches after its first run: ``$SKY_RUNTIME_DIR/.sky/catalogs/<v>/aws/vms.csv`` or
``~/.sky/catalogs/<v>/aws/vms.csv`` (newest schema version first). Columns used: ``InstanceType``,
``AcceleratorName``, ``AcceleratorCount``, ``Price``, ``SpotPrice``, ``Region``. Rows of GPUs the
bundled catalog knows are merged in: per (instance type, region) the on-demand price is the
lowest ``Price`` and the spot price the mean ``SpotPrice`` across zones. When no CSV is present
the bundled catalog is returned unchanged.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from orca.planner.catalog import Catalog, Instance, RegionPrice


def catalog_dirs() -> list[Path]:
    """Directories where SkyPilot keeps its catalogs, most specific first."""
    roots = []
    if os.environ.get("SKY_RUNTIME_DIR"):
        roots.append(Path(os.environ["SKY_RUNTIME_DIR"]) / ".sky" / "catalogs")
    roots.append(Path.home() / ".sky" / "catalogs")
    return roots


def find_aws_csv(dirs: list[Path] | None = None) -> Path | None:
    """Newest ``aws/vms.csv`` under the catalog directories, or None."""
    for root in dirs if dirs is not None else catalog_dirs():
        if not root.is_dir():
            continue
        versions = sorted((p for p in root.iterdir() if p.name.startswith("v")), key=lambda p: _version_key(p.name), reverse=True)
        for v in versions:
            f = v / "aws" / "vms.csv"
            if f.is_file():
                return f
    return None


def _version_key(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else -1


def _num(s: str | None) -> float | None:
    try:
        v = float(s) if s not in (None, "") else None
    except ValueError:
        return None
    return v if v is not None and v > 0 else None


def refresh_from_skypilot(catalog: Catalog, csv_path: Path | None = None) -> Catalog:
    """Catalog with AWS prices taken from SkyPilot's CSV where it has them; unchanged without a CSV."""
    path = csv_path or find_aws_csv()
    if path is None:
        return catalog
    od: dict[tuple[str, str], float] = {}
    spot: dict[tuple[str, str], list[float]] = defaultdict(list)
    shape: dict[str, tuple[str, int]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            gpu = row.get("AcceleratorName") or ""
            if gpu not in catalog.gpus or gpu == catalog.local_gpu:
                continue
            try:
                count = int(float(row.get("AcceleratorCount") or 0))
            except ValueError:
                continue
            if count <= 0:
                continue
            key = (row["InstanceType"], row["Region"])
            shape[row["InstanceType"]] = (gpu, count)
            price = _num(row.get("Price"))
            if price is not None:
                od[key] = min(price, od.get(key, price))
            sp = _num(row.get("SpotPrice"))
            if sp is not None:
                spot[key].append(sp)
    if not shape:
        return catalog
    by_type: dict[str, dict[str, RegionPrice]] = defaultdict(dict)
    for key in set(od) | set(spot):
        itype, region = key
        sp = spot.get(key)
        by_type[itype][region] = RegionPrice(region=region, on_demand=od.get(key), spot=sum(sp) / len(sp) if sp else None)
    instances = {i.instance_type: i for i in catalog.instances}
    for itype, regions in by_type.items():
        gpu, count = shape[itype]
        old = instances.get(itype)
        merged = {p.region: p for p in old.prices} if old else {}
        merged.update(regions)
        instances[itype] = Instance(instance_type=itype, gpu=gpu, gpus=count, prices=tuple(merged[r] for r in sorted(merged)))
    return replace(catalog, instances=tuple(instances.values()), version=f"{catalog.version}+skypilot:{path.parent.parent.name}")
