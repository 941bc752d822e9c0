"""When files expire: OpenAI's expires_after objects checked against the bounds, and the defaults."""

from __future__ import annotations

import pytest

from orca.control.retention import expires_after_seconds, output_expires_at, upload_expires_at
from orca.errors import InputValidationError
from orca.models import JobStatus
from orca.queue.jobs import JobRecord
from orca.settings import RetentionSettings

S = RetentionSettings()


def test_bounds_are_openais():
    assert expires_after_seconds(None, "expires_after", S) is None
    assert expires_after_seconds({"anchor": "created_at", "seconds": 3600}, "expires_after", S) == 3600
    assert expires_after_seconds({"anchor": "created_at", "seconds": "2592000"}, "expires_after", S) == 2592000  # form field
    for policy, param in [({"anchor": "created_at", "seconds": 3599}, "x.seconds"),
                          ({"anchor": "created_at", "seconds": 2592001}, "x.seconds"),
                          ({"anchor": "created_at", "seconds": 36.5}, "x.seconds"),
                          ({"anchor": "created_at", "seconds": None}, "x.seconds"),
                          ({"anchor": "now", "seconds": 3600}, "x.anchor")]:
        with pytest.raises(InputValidationError) as exc:
            expires_after_seconds(policy, "x", S)
        assert exc.value.errors[0].param == param


def test_defaults():
    assert upload_expires_at(100.0, None, "batch", S) == 100.0 + 30 * 86400
    assert upload_expires_at(100.0, 7200, "batch", S) == 7300.0
    assert upload_expires_at(100.0, None, "batch", RetentionSettings(batch_file_s=0)) is None
    record = JobRecord(id="j", user="u", status=JobStatus.COMPLETED, created_at=0, deadline_at=1)
    assert output_expires_at(record, 50.0, S) == 50.0 + 30 * 86400
    assert output_expires_at(record, 50.0, RetentionSettings(output_file_s=0)) is None
    record.output_expires_after_s = 3600
    assert output_expires_at(record, 50.0, RetentionSettings(output_file_s=0)) == 3650.0
