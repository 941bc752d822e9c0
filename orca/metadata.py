"""Limits on the key-value metadata a job or batch carries (OpenAI's: 16 pairs, 64-char keys, 512-char values).

One check for every way in: ``POST /v1/batches``, the native ``POST /api/jobs`` form and the CLI's
``--metadata`` (checked before anything is uploaded).
"""

from __future__ import annotations

from orca.errors import InputValidationError
from orca.models import ValidationIssue
from orca.settings import ControlSettings


def metadata_issues(metadata: dict, settings: ControlSettings) -> list[ValidationIssue]:
    """What is wrong with ``metadata`` (empty if nothing)."""
    issues = []
    if len(metadata) > settings.metadata_max_keys:
        issues.append(ValidationIssue(code="invalid_metadata", param="metadata",
                                      message=f"metadata has {len(metadata)} keys; at most {settings.metadata_max_keys} are allowed"))
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            issues.append(ValidationIssue(code="invalid_metadata", param="metadata", message="metadata keys must be non-empty strings"))
        elif len(key) > settings.metadata_max_key_chars:
            issues.append(ValidationIssue(code="invalid_metadata", param=f"metadata.{key[:16]}...",
                                          message=f"metadata key {key[:16]!r}... is {len(key)} characters; at most "
                                                  f"{settings.metadata_max_key_chars} are allowed"))
        if not isinstance(value, str):
            issues.append(ValidationIssue(code="invalid_metadata", param=f"metadata.{key}", message=f"metadata value of {key!r} must be a string"))
        elif len(value) > settings.metadata_max_value_chars:
            issues.append(ValidationIssue(code="invalid_metadata", param=f"metadata.{key}",
                                          message=f"metadata value of {key!r} is {len(value)} characters; at most "
                                                  f"{settings.metadata_max_value_chars} are allowed"))
    return issues


def check_metadata(metadata: dict, settings: ControlSettings) -> None:
    """Raise InputValidationError (400, every problem listed) unless ``metadata`` is within the limits."""
    issues = metadata_issues(metadata, settings)
    if issues:
        raise InputValidationError(issues[0].message, errors=issues)
