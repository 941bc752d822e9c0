"""Assembler: per-chunk outputs in, one OpenAI-format output file and one error file out."""

from orca.assembler.assemble import AssembleResult, assemble
from orca.ingest.ingest import iter_manifests

__all__ = ["AssembleResult", "assemble", "iter_manifests"]
