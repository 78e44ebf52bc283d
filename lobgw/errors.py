"""The exception tree. Client mistakes become events or error replies; these are the rest.

    LobgwError
    ├── EngineError              a bug in whoever drives the engine (never a client's fault)
    │   ├── UnknownCommandError      apply() got something that is not a command
    │   ├── InvalidCommandError      a command built with values no edge may send (also ValueError)
    │   ├── InvalidTransitionError   an order event that cannot happen in the order's state
    │   └── SnapshotError            a snapshot that does not describe a valid book
    ├── InputError               client input refused at the edge: code, field, reason
    ├── RefusedError             the runtime cannot take a request right now
    │   ├── OverloadedError          a symbol's command queue is full (retry shortly)
    │   ├── ShuttingDownError        the runtime is stopping and takes nothing new
    │   └── UnknownSymbolError       no actor trades that symbol
    ├── InternalError            an unexpected failure, reported to clients only by its id
    └── ConfigError              a bad config.toml or environment override, naming the key

The gateway maps each class to one HTTP status / WebSocket error code in one function
(`lobgw.gateway.errors.describe`).
"""

from __future__ import annotations


class LobgwError(Exception):
    """Base of every error lobgw raises on purpose."""


class EngineError(LobgwError):
    """The engine was driven incorrectly; a programming error, not bad client input."""


class UnknownCommandError(EngineError):
    """The engine was given an object that is not one of its commands."""


class InvalidCommandError(EngineError, ValueError):
    """A command was constructed with values the edge should have refused.

    A ValueError too, so msgspec reports it as a ValidationError when decoding a journal.
    """


class InvalidTransitionError(EngineError):
    """An order lifecycle event arrived in a state where it cannot happen."""


class SnapshotError(EngineError):
    """A snapshot is inconsistent and cannot be restored into a book."""


class InputError(LobgwError):
    """Client input refused at the edge, with a stable code and the offending field."""

    def __init__(self, code: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.code = code
        self.field = field
        self.reason = reason


class RefusedError(LobgwError):
    """The runtime refused a request without looking at it."""


class OverloadedError(RefusedError):
    """A symbol's command queue is full; the caller should retry after a short pause."""


class ShuttingDownError(RefusedError):
    """The runtime is shutting down and accepts no new work."""


class UnknownSymbolError(RefusedError):
    """No actor trades the requested symbol."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown symbol {symbol!r}")
        self.symbol = symbol


class InternalError(LobgwError):
    """An unexpected failure; clients see only `error_id`, the log has the details."""

    def __init__(self, error_id: str) -> None:
        super().__init__(f"internal error {error_id}")
        self.error_id = error_id


class ConfigError(LobgwError):
    """The configuration cannot be used; the message names the key and the reason."""
