"""Ingest: validate a batch input file (streaming), split it into token-balanced chunks, write manifests."""

from orca.ingest.ingest import IngestResult, chunk_budget, ingest, iter_manifests, validate
from orca.ingest.split import split_chunks

__all__ = ["IngestResult", "chunk_budget", "ingest", "iter_manifests", "split_chunks", "validate"]
