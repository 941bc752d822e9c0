"""orca's one exception tree.

Every error raised by orca derives from :class:`OrcaError`. Errors from outside
systems (redis, botocore, httpx, sky, ...) are translated into this tree at the
module that owns that system, so callers never catch a third-party exception.
The class docstring is the default message.
"""

from __future__ import annotations

from typing import Any


class OrcaError(Exception):
    """An orca operation failed."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        self.context = context
        super().__init__(self.message)

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{k}={v!r}" for k, v in self.context.items())
        return f"{self.message} ({details})"


class ConfigError(OrcaError):
    """orca is misconfigured."""


# -- queue ---------------------------------------------------------------
class QueueError(OrcaError):
    """A chunk queue operation failed."""


class QueueUnavailableError(QueueError):
    """Redis could not be reached."""


class StaleLeaseError(QueueError):
    """The lease is no longer held: it expired or a newer claim fenced it off."""


class ChunkNotFoundError(QueueError):
    """No such chunk in this job's queue."""


class EmbeddedRedisError(QueueError):
    """The embedded redis-server could not be started or stopped."""


# -- object store --------------------------------------------------------
class StoreError(OrcaError):
    """An object store operation failed."""


class ObjectNotFoundError(StoreError):
    """No object at that key."""


class StoreUnavailableError(StoreError):
    """The object store could not be reached after retries."""


class AssemblyError(OrcaError):
    """Chunk outputs could not be assembled into the job's result files."""


# -- input ---------------------------------------------------------------
class InputValidationError(OrcaError):
    """The batch input file is invalid."""

    def __init__(self, message: str | None = None, errors: list[Any] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.errors = errors or []


# -- engine / worker -----------------------------------------------------
class EngineError(OrcaError):
    """The inference engine failed."""


class EngineStartError(EngineError):
    """The inference engine did not become healthy."""


class EngineUnavailableError(EngineError):
    """The inference engine is not installed on this machine."""


# -- jobs / control plane ------------------------------------------------
class JobNotFoundError(OrcaError):
    """No such job."""


class JobStateError(OrcaError):
    """The job is not in a state that allows this."""


class AuthError(OrcaError):
    """Missing or invalid API token."""


class ApiError(OrcaError):
    """The control plane returned an error."""


class PermissionDeniedError(AuthError):
    """This needs an admin token."""


class UserNotFoundError(JobNotFoundError):
    """No such user."""


class UserExistsError(JobStateError):
    """A user of that name already exists."""


class QuotaExceededError(OrcaError):
    """A per-user quota is exhausted."""


class PayloadTooLargeError(OrcaError):
    """The request body is larger than the server's upload limit."""


# -- planning / launching ------------------------------------------------
class PlanInfeasibleError(OrcaError):
    """No GPU configuration can finish this job by its deadline."""


class LaunchError(OrcaError):
    """A worker cluster could not be launched."""


class CapacityError(LaunchError):
    """The cloud had no capacity for the requested resources."""


class TeardownError(LaunchError):
    """A worker cluster could not be torn down."""


class TemplateError(OrcaError):
    """A launch template could not be rendered."""
