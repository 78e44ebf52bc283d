"""The exception tree. Client mistakes become events or error replies; these are the rest.

    LobgwError
    ├── EngineError              a bug in whoever drives the engine (never a client's fault)
    │   ├── UnknownCommandError      apply() got something that is not a command
    │   ├── InvalidCommandError      a command built with values no edge may send (also ValueError)
    │   ├── InvalidTransitionError   an order event that cannot happen in the order's state
    │   └── SnapshotError            a snapshot that does not describe a valid book
    ├── InputError               client input refused at the edge: code, field, reason
    └── ConfigError              a bad config.toml or environment override, naming the key

The gateway maps each class to one HTTP status / WebSocket close code in one function.
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


class ConfigError(LobgwError):
    """The configuration cannot be used; the message names the key and the reason."""
