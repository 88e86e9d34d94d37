"""Errors a user or operator can act on. Adapters translate AWS error codes into these."""

from __future__ import annotations


class CompactorError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigurationError(CompactorError):
    """The environment or arguments do not describe a usable pipeline."""


class InvalidMessage(CompactorError):
    """A queue message that can never be applied; it belongs in the DLQ."""


class LeaseBusy(CompactorError):
    """Another compactor holds the lease and it has not expired."""


class LeaseLost(CompactorError):
    """Our lease was taken over or could not be extended; the cycle must be abandoned."""


class CommitRejected(CompactorError):
    """The pointer moved or the lease changed hands before our commit: nothing was published."""


class SnapshotCorrupt(CompactorError):
    """A blob or manifest failed its checksum or size check; it is never opened."""


class ValidationFailed(CompactorError):
    """A freshly built snapshot does not hold what the cycle meant to write; it is not published."""


class UnknownSnapshotFormat(CompactorError):
    """A manifest was written by a newer format than this code understands."""


class DeadlineExceeded(CompactorError):
    """Not enough of the invocation's time remains to finish a cycle safely."""
