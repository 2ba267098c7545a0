"""What can go wrong talking to etcd, as exceptions a caller can act on.

Each carries ``http_status`` the way Cube's other errors do, so an API handler that lets
one through answers with an honest code: 503 when etcd cannot be reached or this
manager no longer leads, 409 when someone else wrote first. A full etcd is
:class:`cube.store.StoreFull` (507), the same as a full disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cube.store import StoreFailed

if TYPE_CHECKING:
    from cube.etcd.txn import Compare


class EtcdError(StoreFailed):
    """etcd answered with an error this module has no better name for."""

    http_status = 500

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code  # the gRPC status code etcd gave, 0 when none


class EtcdUnavailable(EtcdError):
    """No endpoint answered (all down, or none of them part of a working cluster).
    Nothing was done: safe to try again."""

    http_status = 503


class OutcomeUnknown(EtcdUnavailable):
    """A write was sent but its answer was lost: it may or may not have been applied.
    Read back before deciding anything (a conditional write tried again blindly could
    report a conflict with itself)."""


class CasConflict(EtcdError):
    """A conditional write found the store changed since it was read: nothing written."""

    http_status = 409

    def __init__(self, failed: Sequence[Compare], message: str = "") -> None:
        self.failed = list(failed)
        whys = ", ".join(c.why or c.key for c in self.failed) or "a compare"
        super().__init__(message or f"changed since read: {whys}")


class NotLeader(EtcdError):
    """This process does not lead (any more): a fenced write was refused, by etcd or
    before it was sent. Nothing was written."""

    http_status = 503


class Compacted(EtcdError):
    """The revision asked for is older than what etcd still keeps: read afresh."""

    http_status = 410

    def __init__(self, message: str, revision: int = 0) -> None:
        super().__init__(message, code=11)
        self.revision = revision  # the oldest revision still kept, when known
