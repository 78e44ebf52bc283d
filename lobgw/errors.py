"""The exception tree and the stable error codes. Client mistakes become events or error
replies; these are the rest.

    LobgwError
    ├── EngineError              a bug in whoever drives the engine (never a client's fault)
    │   ├── UnknownCommandError      apply() got something that is not a command
    │   ├── InvalidCommandError      a command built with values no edge may send (also ValueError)
    │   ├── InvalidTransitionError   an order event that cannot happen in the order's state
    │   └── SnapshotError            a snapshot that does not describe a valid book
    ├── InputError               client input refused at the edge: code, field, reason
    ├── BadRowError              a market-data row that cannot be read: file, line, reason
    ├── RefusedError             the runtime cannot take a request right now
    │   ├── OverloadedError          a symbol's command queue is full (retry shortly)
    │   ├── ShuttingDownError        the runtime is stopping and takes nothing new
    │   ├── NotReadyError            the symbol is still recovering its journal
    │   ├── UnknownSymbolError       no actor trades that symbol
    │   └── JournalUnavailableError  the journal cannot be written (also a JournalError)
    ├── JournalError             the durable history of a symbol
    │   ├── JournalUnavailableError  (above)
    │   ├── JournalCorruptError      the history fails its checks (recovery refuses to start)
    │   ├── JournalLockedError       another process holds the journal directory
    │   ├── JournalSpecError         the config's instrument differs from the journal's
    │   └── SnapshotDamagedError     a snapshot file fails its checks (an older one is tried)
    ├── ApiError                 a refusal as the gateway answers it (lobgw.gateway.errors)
    ├── InternalError            an unexpected failure, reported to clients only by its id
    └── ConfigError              a bad config.toml or environment override, naming the key

`ErrorCode` holds every machine-readable code a client can see. The gateway maps each code
to one HTTP status and each exception to one code in one table and one function
(`lobgw.gateway.errors`); `tests/test_architecture.py` checks that this drawing names every
subclass of `LobgwError` in the package.
"""

from __future__ import annotations

import enum
from pathlib import Path


class ErrorCode(enum.StrEnum):
    """Stable codes of every refusal. A `StrEnum`: each member equals its wire text.

    Engine rejections use the same text as the engine's `Reason` (`ErrorCode(reason)`).
    """

    # the request itself is malformed or invalid
    MALFORMED_HTTP = "MALFORMED_HTTP"
    MALFORMED_JSON = "MALFORMED_JSON"
    MISSING_FIELD = "MISSING_FIELD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_VALUE = "INVALID_VALUE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    UNSUPPORTED_MESSAGE = "UNSUPPORTED_MESSAGE"
    # an order's fields, checked at the edge against the symbol's rules
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    PRICE_OFF_TICK = "PRICE_OFF_TICK"
    QUANTITY_OFF_LOT = "QUANTITY_OFF_LOT"
    MISSING_PRICE = "MISSING_PRICE"
    PRICE_NOT_ALLOWED = "PRICE_NOT_ALLOWED"
    POST_ONLY_NOT_ALLOWED = "POST_ONLY_NOT_ALLOWED"
    MISSING_STOP_PRICE = "MISSING_STOP_PRICE"
    STOP_PRICE_NOT_ALLOWED = "STOP_PRICE_NOT_ALLOWED"
    DISPLAY_NOT_ALLOWED = "DISPLAY_NOT_ALLOWED"
    DISPLAY_ABOVE_QUANTITY = "DISPLAY_ABOVE_QUANTITY"
    MISSING_EXPIRE_TIME = "MISSING_EXPIRE_TIME"
    EXPIRE_TIME_NOT_ALLOWED = "EXPIRE_TIME_NOT_ALLOWED"
    EXPIRE_TIME_IN_PAST = "EXPIRE_TIME_IN_PAST"
    NO_SESSION = "NO_SESSION"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    # who asks, and how often
    UNAUTHORIZED = "UNAUTHORIZED"
    ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    # what the request names does not exist or conflicts
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    # the engine said no (the values of lobgw.book.types.Reason)
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    QUANTITY_BELOW_MINIMUM = "QUANTITY_BELOW_MINIMUM"
    QUANTITY_ABOVE_MAXIMUM = "QUANTITY_ABOVE_MAXIMUM"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLED = "FOK_NOT_FILLED"
    STOP_WOULD_TRIGGER = "STOP_WOULD_TRIGGER"
    STP = "STP"
    # the runtime cannot take it now
    OVERLOADED = "OVERLOADED"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    NOT_READY = "NOT_READY"
    INTERNAL_ERROR = "INTERNAL_ERROR"


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

    def __init__(self, code: ErrorCode, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.code = code
        self.field = field
        self.reason = reason


class BadRowError(LobgwError):
    """A market-data row that cannot be read: where, and why.

    `kind` is the reason's first word (an `ErrorCode` or "unparseable"), what summaries count.
    """

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
        self.kind = reason.split(":", 1)[0]


class RefusedError(LobgwError):
    """The runtime refused a request without looking at it."""


class OverloadedError(RefusedError):
    """A symbol's command queue is full; the caller should retry after a short pause."""


class ShuttingDownError(RefusedError):
    """The runtime is shutting down and accepts no new work."""


class NotReadyError(RefusedError):
    """The symbol is still recovering its journal; it takes requests once it is done."""


class UnknownSymbolError(RefusedError):
    """No actor trades the requested symbol.

    `resource`: the symbol was the resource a path names (an HTTP 404 NOT_FOUND), rather
    than a value in a request (400 UNKNOWN_SYMBOL).
    """

    def __init__(self, symbol: str, resource: bool = False) -> None:
        super().__init__(f"unknown symbol {symbol!r}")
        self.symbol = symbol
        self.resource = resource


class JournalError(LobgwError):
    """Base of journal failures."""


class JournalUnavailableError(JournalError, RefusedError):
    """The journal cannot be written: the symbol takes no orders until it can."""


class JournalCorruptError(JournalError):
    """The journal's history fails its checks: recovery refuses to start.

    `dropped`: how many journaled (acknowledged) commands `--repair` would quarantine.
    """

    def __init__(self, path: Path, offset: int, reason: str, dropped: int = 0) -> None:
        super().__init__(f"{path} at offset {offset}: {reason} (start with --repair to keep "
                         "what comes before and quarantine the rest: that drops "
                         f"{dropped} journaled command(s))")
        self.path = path
        self.offset = offset
        self.reason = reason
        self.dropped = dropped


class JournalLockedError(JournalError):
    """Another process uses the journal directory."""

    def __init__(self, directory: Path, holder: str) -> None:
        super().__init__(f"the journal directory {directory} is in use by pid {holder}")
        self.directory = directory
        self.holder = holder


class JournalSpecError(JournalError):
    """The configured instrument differs from the one the journal was written with."""

    def __init__(self, symbol: str, directory: Path, differences: str) -> None:
        super().__init__(f"{symbol}: the config changes the instrument its journal "
                         f"({directory}) was written with: {differences}; prices and "
                         "quantities in the journal are ticks and lots of the old one, so "
                         "lobgw will not reinterpret them (move the journal away to start "
                         "this symbol afresh)")
        self.symbol = symbol


class SnapshotDamagedError(JournalError):
    """A snapshot file fails its length or CRC check (recovery falls back to an older one)."""


class InternalError(LobgwError):
    """An unexpected failure; clients see only `error_id`, the log has the details."""

    def __init__(self, error_id: str) -> None:
        super().__init__(f"internal error {error_id}")
        self.error_id = error_id


class ConfigError(LobgwError):
    """The configuration cannot be used; the message names the key and the reason."""
