"""Exceptions raised by agentmem, one per error kind.

Every one is an :class:`AgentMemError` with a stable ``code`` (the same
``AGENTMEM_*`` strings as the Node.js binding and the C result names), and
also derives from the built-in exception a Python programmer would expect
(``ValueError`` for bad values, ``LookupError`` for unknown ids, ...).
"""

from __future__ import annotations


class AgentMemError(Exception):
    """Base of every agentmem error."""

    code: str = "AGENTMEM_INTERNAL"


class InvalidArgumentError(AgentMemError, ValueError):
    """A value of the wrong shape: unknown kind or state, empty data, bad id."""

    code = "AGENTMEM_INVALID_ARGUMENT"


class TooLargeError(AgentMemError, ValueError):
    """Data larger than the store's maximum unit size."""

    code = "AGENTMEM_TOO_LARGE"


class UnknownAgentError(AgentMemError, LookupError):
    """The agent is not registered (or was released)."""

    code = "AGENTMEM_UNKNOWN_AGENT"


class UnknownUnitError(AgentMemError, LookupError):
    """No such unit, or all its references were released."""

    code = "AGENTMEM_UNKNOWN_UNIT"


class NotOwnerError(AgentMemError, LookupError):
    """The agent holds no reference to the unit."""

    code = "AGENTMEM_NOT_OWNER"


class AccessDeniedError(AgentMemError, PermissionError):
    """The agent may not read the unit: private to another, not shared."""

    code = "AGENTMEM_ACCESS_DENIED"


class UnknownConversationError(AgentMemError, LookupError):
    """No such conversation."""

    code = "AGENTMEM_UNKNOWN_CONVERSATION"


class OutOfRangeError(AgentMemError, IndexError):
    """A message index outside the conversation."""

    code = "AGENTMEM_OUT_OF_RANGE"


class CorruptError(AgentMemError):
    """Stored bytes failed their checksum; nothing was returned."""

    code = "AGENTMEM_CORRUPT"


class ClosedError(AgentMemError, ValueError):
    """The store was closed (like I/O on a closed file)."""

    code = "AGENTMEM_CLOSED"


class NotRunningError(AgentMemError, ConnectionError):
    """agentmemd is not running at the socket path."""

    code = "AGENTMEM_NOT_RUNNING"


class TransportError(AgentMemError, OSError):
    """An I/O error talking to agentmemd."""

    code = "AGENTMEM_IO"


class ProtocolError(AgentMemError):
    """agentmemd answered something this library does not understand."""

    code = "AGENTMEM_PROTOCOL"


class InternalError(AgentMemError):
    """A bug in agentmem: please report it."""

    code = "AGENTMEM_INTERNAL"


BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        TooLargeError,
        UnknownAgentError,
        UnknownUnitError,
        NotOwnerError,
        AccessDeniedError,
        UnknownConversationError,
        OutOfRangeError,
        CorruptError,
        ClosedError,
        NotRunningError,
        TransportError,
        ProtocolError,
        InternalError,
    )
}
