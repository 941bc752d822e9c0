"""`orca status JOB` shows the job's token usage once requests have committed."""

from __future__ import annotations

from orca.cli_format import job_detail
from orca.control.schemas import Job, Usage
from orca.models import JobStatus


def job(**kw) -> Job:
    return Job(id="batch_1", status=JobStatus.IN_PROGRESS, created_at=0.0, deadline_at=3600.0, **kw)


def test_tokens_line_only_with_usage():
    assert "tokens" not in job_detail(job(), now=10.0)
    text = job_detail(job(usage=Usage(input_tokens=1200, output_tokens=340, total_tokens=1540, cached_tokens=200)), now=10.0)
    assert "tokens    1,200 in (200 cached), 340 out (committed requests)" in text
