"""Where each object of a job lives in the store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobLayout:
    job_id: str

    @property
    def root(self) -> str:
        return f"jobs/{self.job_id}/"

    @property
    def input(self) -> str:
        """The user's input file, byte for byte."""
        return f"{self.root}input.jsonl"

    @property
    def validation_errors(self) -> str:
        """JSON list of ValidationIssue when validation failed."""
        return f"{self.root}validation_errors.json"

    @property
    def manifests(self) -> str:
        """JSONL of ChunkManifest, one per chunk, in chunk order."""
        return f"{self.root}manifests.jsonl"

    def chunk(self, chunk_id: str) -> str:
        """The chunk's input lines, verbatim, in manifest order."""
        return f"{self.root}chunks/{chunk_id}.jsonl"

    def chunk_output(self, chunk_id: str, generation: int) -> str:
        """A worker's output for the chunk under one lease generation (only the committed one counts)."""
        return f"{self.root}outputs/{chunk_id}/gen-{generation:06d}.jsonl"

    def chunk_output_prefix(self, chunk_id: str) -> str:
        return f"{self.root}outputs/{chunk_id}/"

    def split(self, chunk_id: str, tag: str) -> str:
        """``ChunkSplit`` JSON of a chunk's partial commit (its children's data and output have their own keys)."""
        return f"{self.root}splits/{chunk_id}/{tag}.json"

    @property
    def output(self) -> str:
        """Final OpenAI-format output file (successful requests)."""
        return f"{self.root}output.jsonl"

    @property
    def errors(self) -> str:
        """Final OpenAI-format error file (failed requests)."""
        return f"{self.root}errors.jsonl"
