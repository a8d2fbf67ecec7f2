"""Exceptions raised by the dpr package. Every one derives from DprError."""
from __future__ import annotations

import builtins

__all__ = ["DprError", "ConnectionError", "TimeoutError", "ProtocolError", "ResponseError",
           "RollbackError", "SessionInDoubtError", "SessionClosedError", "DiscoveryError"]


class DprError(Exception):
    """Base class of every error raised by dpr."""


class ConnectionError(DprError, builtins.ConnectionError):
    """A shard or the finder cannot be reached, or the connection broke."""


class TimeoutError(ConnectionError, builtins.TimeoutError):
    """A shard or the finder did not answer in time (the connection is closed)."""


class ProtocolError(DprError):
    """A server sent something that is not valid RESP or not a valid DPR answer."""


class ResponseError(DprError):
    """The server answered a command with an error reply (e.g. INCR on a value
    that is not an integer). The operation was executed (it has a sequence
    number) and its answer is the error."""


class RollbackError(DprError):
    """The cluster rolled back and some of this session's operations are lost.

    Operations with sequence numbers ``< lost_from`` survived; ``lost_from``
    and every operation after it that the session issued before the rollback
    (up to ``last_seq_before``) are lost, including the operation whose call
    raised this error. The session has moved to ``world_line`` and can be
    used again right away; operations issued from now on get sequence numbers
    ``> last_seq_before``.
    """

    def __init__(self, lost_from: int, lost_count: int, world_line: int,
                 old_world_line: int, last_seq_before: int, reason: str):
        self.lost_from = lost_from
        self.lost_count = lost_count
        self.world_line = world_line
        self.old_world_line = old_world_line
        self.last_seq_before = last_seq_before
        self.reason = reason
        if lost_count:
            what = ("operations %d..%d lost (%d), operations up to %d survived"
                    % (lost_from, last_seq_before, lost_count, lost_from - 1))
        else:
            what = "no operation lost"
        super().__init__("the cluster rolled back from world-line %d to %d (%s): %s; the "
                         "session continues on world-line %d"
                         % (old_world_line, world_line, reason, what, world_line))

    def __reduce__(self) -> tuple[type, tuple[int, int, int, int, int, str]]:  # picklable (e.g. sent from a worker process)
        return (type(self), (self.lost_from, self.lost_count, self.world_line,
                             self.old_world_line, self.last_seq_before, self.reason))


class SessionInDoubtError(ConnectionError):
    """A batch's answer never came (the shard's connection broke or timed
    out), so its operations may or may not have run, and the finder has not
    (yet) started a new world-line that would settle them. If the shard was
    restarted, the next call learns the rollback (RollbackError); if it did
    not fail, the session cannot continue: open a new one."""


class SessionClosedError(DprError):
    """The session was closed."""


class DiscoveryError(DprError):
    """DNS-SD found nothing usable (dpr.discover): no agent of the cluster
    answered in the domain, the DNS server did not answer, or the package a
    back end needs is missing. The message names the cluster, the domain
    and what was seen instead (e.g. other clusters)."""
