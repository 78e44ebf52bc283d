"""The one error table: every code's HTTP status and default text, WebSocket close codes,
and the one function that maps any failure to a refusal.

Every refusal a client sees, over REST or WebSocket, is `{code, field, reason}` (plus the
order's state when the engine refused an order or a change), with a code from
`lobgw.errors.ErrorCode`. `describe` turns any exception into an `ApiError`; unexpected
exceptions become `INTERNAL_ERROR` with an opaque id that also appears in the log, never a
traceback.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import uuid

import msgspec
from aiohttp import web

from lobgw.book.types import Reason
from lobgw.errors import (
    ErrorCode,
    InputError,
    InternalError,
    JournalUnavailableError,
    LobgwError,
    NotReadyError,
    OverloadedError,
    ShuttingDownError,
    UnknownSymbolError,
)
from lobgw.gateway.wire import (
    DuplicateKeyError,
    ErrorBody,
    ErrorMessage,
    ErrorResponse,
    OrderInfo,
    RequestId,
)

log = logging.getLogger("lobgw.gateway")

E = ErrorCode
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    # the request itself
    E.MALFORMED_HTTP: (400, "the request is not valid HTTP/1.1"),
    E.MALFORMED_JSON: (400, "the body is not valid JSON"),
    E.MISSING_FIELD: (400, "this field is required"),
    E.UNKNOWN_FIELD: (400, "this field is not part of the message"),
    E.INVALID_TYPE: (400, "this field has the wrong type"),
    E.INVALID_VALUE: (400, "this value is not allowed here"),
    E.OUT_OF_RANGE: (400, "this value is out of range"),
    E.REQUEST_TOO_LARGE: (413, "the request is too large"),
    E.REQUEST_TIMEOUT: (408, "the request body did not arrive in time"),
    E.UNSUPPORTED_MESSAGE: (400, "send JSON text frames"),
    # an order's fields against the symbol's rules
    E.INVALID_QUANTITY: (400, "the quantity must be a finite number greater than zero"),
    E.INVALID_PRICE: (400, "the price must be a finite number greater than zero"),
    E.PRICE_OFF_TICK: (400, "the price is not a multiple of the tick size"),
    E.QUANTITY_OFF_LOT: (400, "the quantity is not a multiple of the lot size"),
    E.MISSING_PRICE: (400, "a limit order needs a price"),
    E.PRICE_NOT_ALLOWED: (400, "a market order takes no price"),
    E.POST_ONLY_NOT_ALLOWED: (400, "post-only orders must be GTC limit orders"),
    E.MISSING_STOP_PRICE: (400, "a STOP or STOP_LIMIT order needs a stop_price"),
    E.STOP_PRICE_NOT_ALLOWED: (400, "only STOP and STOP_LIMIT orders take a stop_price"),
    E.DISPLAY_NOT_ALLOWED: (400, "display_quantity (an iceberg) needs a LIMIT order with "
                                 "time in force GTC, GTD or DAY"),
    E.DISPLAY_ABOVE_QUANTITY: (400, "display_quantity is above the order's quantity"),
    E.MISSING_EXPIRE_TIME: (400, "a GTD order needs an expire_time"),
    E.EXPIRE_TIME_NOT_ALLOWED: (400, "only GTD orders take an expire_time (DAY orders "
                                     "expire at the session end)"),
    E.EXPIRE_TIME_IN_PAST: (400, "expire_time is not in the future"),
    E.NO_SESSION: (400, "this symbol has no session configured, so DAY orders are not "
                        "available"),
    E.BATCH_TOO_LARGE: (400, "the batch has more requests than allowed"),
    # who asks, and how often
    E.UNAUTHORIZED: (401, "a valid X-API-Key header is required"),
    E.ALREADY_AUTHENTICATED: (409, "this connection is already authenticated; open another "
                                   "one for another account"),
    E.FORBIDDEN: (403, "this account may not use this"),
    E.RATE_LIMITED: (429, "too many requests"),
    # what the request names
    E.NOT_FOUND: (404, "not found"),
    E.METHOD_NOT_ALLOWED: (405, "method not allowed"),
    E.UNKNOWN_SYMBOL: (400, "no such symbol is traded here"),
    E.ORDER_NOT_FOUND: (404, "no open order of this account has that id"),
    E.DUPLICATE_CLIENT_ORDER_ID: (
        409, "an open order of this account already uses this client order id"),
    # the engine said no: the request was valid, the market refused it
    E.DUPLICATE_ORDER_ID: (409, "the order id is already in use"),
    E.QUANTITY_BELOW_MINIMUM: (422, "the quantity is below the symbol's minimum"),
    E.QUANTITY_ABOVE_MAXIMUM: (422, "the quantity is above the symbol's maximum"),
    E.PRICE_OUT_OF_BAND: (422, "the price is outside the symbol's price band"),
    E.POST_ONLY_WOULD_TAKE: (422, "the post-only order would have traded on arrival"),
    E.FOK_NOT_FILLED: (422, "the fill-or-kill order could not fill completely at once"),
    E.STOP_WOULD_TRIGGER: (422, "the last trade already reached the stop price"),
    E.STP: (422, "the order would have traded with the same account"),
    # the runtime
    E.OVERLOADED: (503, "the symbol's queue is full; retry shortly"),
    E.JOURNAL_UNAVAILABLE: (503, "the symbol's journal cannot be written; no order is "
                                 "accepted until it can"),
    E.SHUTTING_DOWN: (503, "the gateway is shutting down"),
    E.NOT_READY: (503, "the gateway is recovering its journal; retry shortly"),
    E.INTERNAL_ERROR: (500, "internal error"),
}
"""Every `ErrorCode`: (HTTP status, default reason). The WebSocket sends the same body."""

RETRY_AFTER = 1
"""Seconds a client should wait after OVERLOADED, JOURNAL_UNAVAILABLE or SHUTTING_DOWN."""

_HTTP_STATUS_CODES = {404: E.NOT_FOUND, 405: E.METHOD_NOT_ALLOWED, 413: E.REQUEST_TOO_LARGE}


class CloseCode(enum.IntEnum):
    """WebSocket close codes lobgw uses (4000-4999 are application codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4008


class ApiError(LobgwError):
    """A refusal as the gateway answers it: a code, the field at fault, a reason.

    `order` is the order's state when the engine refused an order or a change of one.
    """

    def __init__(self, code: ErrorCode, reason: str | None = None, field: str | None = None,
                 *, retry_after: float | None = None, error_id: str | None = None,
                 order: OrderInfo | None = None) -> None:
        status, default = ERRORS[code]
        super().__init__(reason or default)
        self.code = code
        self.status = status
        self.reason = reason or default
        self.field = field
        self.retry_after = retry_after
        self.error_id = error_id
        self.order = order

    def body(self) -> ErrorBody:
        """The `{code, field, reason}` part, with the error id when there is one."""
        return ErrorBody(code=self.code, reason=self.reason, field=self.field,
                         error_id=self.error_id,
                         retry_after_ms=None if self.retry_after is None
                         else max(1, math.ceil(self.retry_after * 1000)))

    def response(self) -> ErrorResponse:
        """The REST body."""
        return ErrorResponse(error=self.body(), order=self.order)

    def message(self, request_id: RequestId) -> ErrorMessage:
        """The WebSocket reply to request `request_id`."""
        return ErrorMessage(id=request_id, error=self.body(), order=self.order)

    def within(self, parent: str) -> ApiError:
        """The same refusal with `field` as a path below `parent` (`price` -> `order.price`,
        as the WebSocket's place nests the order)."""
        if self.field is None or self.field.startswith(parent + "."):
            return self
        return ApiError(self.code, self.reason, f"{parent}.{self.field}",
                        retry_after=self.retry_after, error_id=self.error_id, order=self.order)


def rejected(reason: Reason, order: OrderInfo, text: str | None = None) -> ApiError:
    """The engine refused an order or a change of one; `order` is its state after that."""
    return ApiError(ErrorCode(reason.value), text, order=order)


def describe(error: BaseException) -> ApiError:
    """Map any exception to an ApiError; unexpected ones are logged under a fresh error id."""
    match error:
        case ApiError():
            return error
        case msgspec.ValidationError():
            return from_validation_error(error)
        case msgspec.DecodeError():
            return ApiError(E.MALFORMED_JSON, f"the body is not valid JSON: {error}")
        case DuplicateKeyError():
            return ApiError(E.MALFORMED_JSON, str(error), error.key)
        case RecursionError():
            return ApiError(E.MALFORMED_JSON, "the JSON is nested too deeply")
        case InputError():
            return ApiError(error.code, error.reason, error.field)
        case UnknownSymbolError():
            # a symbol in the path is a resource that does not exist; in a body, a bad value
            return ApiError(E.NOT_FOUND if error.resource else E.UNKNOWN_SYMBOL,
                            f"unknown symbol {error.symbol!r}", "symbol")
        case OverloadedError():
            return ApiError(E.OVERLOADED, retry_after=RETRY_AFTER)
        case JournalUnavailableError():
            return ApiError(E.JOURNAL_UNAVAILABLE, retry_after=RETRY_AFTER)
        case ShuttingDownError():
            return ApiError(E.SHUTTING_DOWN, retry_after=RETRY_AFTER)
        case NotReadyError():
            return ApiError(E.NOT_READY, retry_after=RETRY_AFTER)
        case InternalError():
            return ApiError(E.INTERNAL_ERROR, error_id=error.error_id)
        case web.HTTPException() if error.status >= 400:
            code = _HTTP_STATUS_CODES.get(error.status, E.INVALID_VALUE)
            return ApiError(code, error.reason or None)
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error (error id %s)", error_id, exc_info=error)
    return ApiError(E.INTERNAL_ERROR, error_id=error_id)


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
        return ApiError(E.MISSING_FIELD, None, _join(field, missing["name"]))
    if unknown := _UNKNOWN.match(message):
        return ApiError(E.UNKNOWN_FIELD, None, _join(field, unknown["name"]))
    if message.startswith("Expected `") and ", got `" in message:
        return ApiError(E.INVALID_TYPE, message, field or None)
    if message.startswith("Expected `") and any(op in message for op in ("<", ">")):
        return ApiError(E.OUT_OF_RANGE, message, field or None)
    return ApiError(E.INVALID_VALUE, message, field or None)


def _dotted(path: str) -> str:
    return path.lstrip(".").replace("[", ".").replace("]", "")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
