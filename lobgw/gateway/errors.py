"""Error codes, WebSocket close codes, and the one place that maps failures to them.

Every refusal a client sees is `{code, field, reason}` with a code from `ErrorCode` (or an
engine `Reason` for business rejections). `describe` turns any exception into an HTTP status
and such a body; unexpected exceptions become `INTERNAL_ERROR` with an opaque id that also
appears in the log, never a traceback.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid

import msgspec

from lobgw.book.types import Reason
from lobgw.errors import (
    InputError,
    InternalError,
    OverloadedError,
    ShuttingDownError,
    UnknownSymbolError,
)
from lobgw.gateway.wire import ErrorBody
from lobgw.journal import JournalUnavailableError

log = logging.getLogger("lobgw.gateway")


class ErrorCode(enum.Enum):
    """Stable codes for refusals that are not engine rejections."""

    MALFORMED_JSON = "MALFORMED_JSON"
    MISSING_FIELD = "MISSING_FIELD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_VALUE = "INVALID_VALUE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    UNAUTHORIZED = "UNAUTHORIZED"
    RATE_LIMITED = "RATE_LIMITED"
    OVERLOADED = "OVERLOADED"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MESSAGE = "UNSUPPORTED_MESSAGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class CloseCode(enum.IntEnum):
    """WebSocket close codes lobgw uses (4000-4999 are application codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4008


# An engine rejection is 422 (the request was valid, the market said no), except these.
REJECTION_STATUS = {
    Reason.ORDER_NOT_FOUND.value: 404,
    Reason.DUPLICATE_ORDER_ID.value: 409,
}

_STATUS = {
    ErrorCode.UNKNOWN_SYMBOL: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.ORDER_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.DUPLICATE_CLIENT_ORDER_ID: 409,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.JOURNAL_UNAVAILABLE: 503,
    ErrorCode.SHUTTING_DOWN: 503,
}

RETRY_AFTER_OVERLOADED = 1


class ApiError(Exception):
    """A refusal with a code, raised by handlers and mapped by `describe`."""

    def __init__(self, code: ErrorCode | str, reason: str, field: str | None = None,
                 retry_after: float | None = None, error_id: str | None = None) -> None:
        super().__init__(reason)
        self.code = code.value if isinstance(code, ErrorCode) else code
        self.reason = reason
        self.field = field
        self.retry_after = retry_after
        self.error_id = error_id
        self.status = _STATUS.get(code, 400) if isinstance(code, ErrorCode) else 400
        """The HTTP status: 400 for bad input unless the code says otherwise."""

    def body(self) -> ErrorBody:
        """The wire form, with the error id when there is one."""
        return ErrorBody(code=self.code, reason=self.reason, field=self.field,
                         error_id=self.error_id)


def describe(error: BaseException) -> ApiError:
    """Map any exception to an ApiError; unexpected ones are logged under a fresh error id."""
    match error:
        case ApiError():
            return error
        case msgspec.ValidationError():
            return from_validation_error(error)
        case msgspec.DecodeError():
            return ApiError(ErrorCode.MALFORMED_JSON, f"the body is not valid JSON: {error}")
        case InputError():
            return ApiError(error.code, error.reason, error.field)
        case UnknownSymbolError():
            return ApiError(ErrorCode.UNKNOWN_SYMBOL, f"unknown symbol {error.symbol!r}",
                            "symbol")
        case OverloadedError():
            return ApiError(ErrorCode.OVERLOADED, "the symbol's queue is full; retry shortly",
                            retry_after=RETRY_AFTER_OVERLOADED)
        case JournalUnavailableError():
            return ApiError(ErrorCode.JOURNAL_UNAVAILABLE,
                            "the symbol's journal cannot be written; no order is accepted "
                            "until it can", retry_after=RETRY_AFTER_OVERLOADED)
        case ShuttingDownError():
            return ApiError(ErrorCode.SHUTTING_DOWN, "the gateway is shutting down",
                            retry_after=RETRY_AFTER_OVERLOADED)
        case InternalError():
            return ApiError(ErrorCode.INTERNAL_ERROR, "internal error", error_id=error.error_id)
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error (error id %s)", error_id, exc_info=error)
    return ApiError(ErrorCode.INTERNAL_ERROR, "internal error", error_id=error_id)


_AT = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")


def from_validation_error(error: msgspec.ValidationError) -> ApiError:
    """Turn msgspec's message into {code, field, reason}; the field is a dotted path."""
    message = str(error)
    path = ""
    match = _AT.match(message)
    if match:
        message, path = match["reason"], match["path"]
    field = _dotted(path)
    if missing := _MISSING.match(message):
        return ApiError(ErrorCode.MISSING_FIELD, "this field is required",
                        _join(field, missing["name"]))
    if unknown := _UNKNOWN.match(message):
        return ApiError(ErrorCode.UNKNOWN_FIELD, "this field is not part of the message",
                        _join(field, unknown["name"]))
    if message.startswith("Expected `") and ", got `" in message:
        return ApiError(ErrorCode.INVALID_TYPE, message, field or None)
    if message.startswith("Expected `") and any(op in message for op in ("<", ">")):
        return ApiError(ErrorCode.OUT_OF_RANGE, message, field or None)
    return ApiError(ErrorCode.INVALID_VALUE, message, field or None)


def _dotted(path: str) -> str:
    return path.lstrip(".").replace("[", ".").replace("]", "")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
