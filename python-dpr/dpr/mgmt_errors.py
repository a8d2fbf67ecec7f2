"""Exceptions of the management API (dpr-agent's control socket).

Every one derives from :class:`dpr.errors.DprError`. The agent's error codes
(docs/control-api.md) map to them like this:

    spec_invalid         SpecError          (.problems: [(path, message), ...])
    not_found            NotFound
    permission_denied    PermissionDenied
    unavailable          AgentUnavailable   (also: socket missing or refused)
    bad_request          AgentProtocolError (a dpr.ProtocolError)
    unsupported_version  AgentProtocolError (a dpr.ProtocolError)
    internal             AgentError         (a dpr.DprError)

Errors that came from the agent carry ``.code`` (the stable error code),
``.details`` (the error's ``details``, or None) and the agent's message.
"""
from __future__ import annotations

import builtins
from typing import Any, Iterable, Sequence

from .errors import ConnectionError, DprError, ProtocolError

__all__ = ["AgentError", "SpecError", "NotFound", "PermissionDenied", "AgentUnavailable",
           "AgentProtocolError", "ReadyTimeout", "RolloutHalted", "error_from_reply"]


class AgentError(DprError):
    """An error reply from dpr-agent (base of the typed ones below; raised as
    is for ``internal`` and for codes this client does not know)."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class SpecError(AgentError, ValueError):
    """The cluster spec is invalid; nothing was changed.

    ``problems`` lists every problem as ``(path, message)``, e.g.
    ``("cachestores[0].shards", "must be >= 1 (got 0)")``. ``str()`` of the
    error lists them all, one per line after the first."""

    code = "spec_invalid"

    def __init__(self, problems: Iterable[tuple[str, str]], message: str | None = None, *,
                 details: Any = None):
        self.problems = [(str(p), str(m)) for p, m in problems]
        if message is None:
            message = format_problems(self.problems)
        super().__init__(message, details=details)


def format_problems(problems: Sequence[tuple[str, str]]) -> str:
    if not problems:
        return "invalid cluster spec"
    lines = ["%s: %s" % (p, m) if p else m for p, m in problems]
    if len(lines) == 1:
        return "invalid cluster spec: " + lines[0]
    return ("invalid cluster spec (%d problems): " % len(lines)) + "; ".join(lines)


class NotFound(AgentError, LookupError):
    """The named deployment does not exist."""

    code = "not_found"


class PermissionDenied(AgentError, builtins.PermissionError):
    """The agent refused this caller: it is neither root nor a member of the
    agent's control group (``dpr`` by default)."""

    code = "permission_denied"


class AgentUnavailable(AgentError, ConnectionError):
    """dpr-agent cannot be reached (no socket, connection refused or broken,
    no answer in time) or answered ``unavailable`` (it cannot act now, e.g.
    systemd is not reachable): retry later."""

    code = "unavailable"


class AgentProtocolError(AgentError, ProtocolError):
    """The agent refused the request as malformed (``bad_request``,
    ``unsupported_version``), or sent something that is not a valid reply.
    Usually a version mismatch between this package and dpr-agent."""

    code = "bad_request"


class ReadyTimeout(DprError, builtins.TimeoutError):
    """``Cluster.wait_ready`` gave up: some instances are not ready.

    ``not_ready`` lists the instances (:class:`dpr.cluster.Instance`) that
    were not ready at the last look; ``status`` is that last status."""

    def __init__(self, message: str, not_ready: list | None = None, status: Any = None):
        super().__init__(message)
        self.not_ready = list(not_ready or [])
        self.status = status


_BY_CODE = {
    "spec_invalid": SpecError,
    "not_found": NotFound,
    "permission_denied": PermissionDenied,
    "unavailable": AgentUnavailable,
    "bad_request": AgentProtocolError,
    "unsupported_version": AgentProtocolError,
}


def error_from_reply(error: Any) -> AgentError:
    """The exception for the ``error`` object of a failed reply."""
    if not isinstance(error, dict):
        return AgentProtocolError("dpr-agent sent a failed reply without a valid error "
                                  "object: %r" % (error,), code="bad_reply")
    code = error.get("code")
    code = code if isinstance(code, str) else "internal"
    message = error.get("message")
    message = message if isinstance(message, str) and message else code
    details = error.get("details")
    if code == "spec_invalid":
        problems = []
        if isinstance(details, list):
            for d in details:
                if isinstance(d, dict):
                    problems.append((str(d.get("path", "")), str(d.get("message", ""))))
                else:
                    problems.append(("", str(d)))
        if not problems:
            problems = [("", message)]
        return SpecError(problems, details=details)
    if code == "permission_denied" and "usermod" not in message:
        message += (" — run as root, or join the agent's control group (config control.group, "
                    "default dpr): sudo usermod -aG dpr $USER, then log in again")
    cls = _BY_CODE.get(code, AgentError)
    return cls(message, code=code, details=details)


class RolloutHalted(DprError):
    """A roll-out halted by itself: an updated instance failed, or was not
    ready within the deployment's ``progress_deadline_seconds``.
    ``deployment`` names it, ``reason`` is the agent's reason (also in
    ``dprctl rollout status``); ``status`` is the last status. Undo it
    (``Cluster.rollout_undo``), or apply a fix."""

    def __init__(self, message: str, deployment: str | None = None,
                 reason: str | None = None, status: Any = None):
        super().__init__(message)
        self.deployment = deployment
        self.reason = reason
        self.status = status
