"""Connections that cannot be held open for free: a per-IP cap, and deadlines for a request.

aiohttp closes idle keep-alive connections, but has no deadline for the headers of a
request, so partial headers, silent TCP connections and unsent bodies would stay open for
an hour. `ConnectionGuard` wraps aiohttp's protocol (one thin delegating object per
connection) and:

- refuses a connection from an address that already has `max_connections_per_ip` open
  (trusted proxies are exempt: every client behind them shares their address);
- cuts a connection that has not delivered complete request headers within
  `header_timeout_seconds` of opening, or within `keepalive_seconds` of its last response;
- leaves WebSockets to their own rules (pings, the pre-auth timeout in `lobgw.gateway.ws`).

Request bodies have their own deadline where they are read (`lobgw.gateway.rest`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import msgspec
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from lobgw.errors import ErrorCode
from lobgw.gateway.errors import ApiError

WAITING, BUSY, UPGRADED = "waiting", "busy", "upgraded"


class _Tracked:
    __slots__ = ("peer", "requests", "since", "state", "transport")

    def __init__(self, transport: asyncio.Transport, peer: str) -> None:
        self.transport = transport
        self.peer = peer
        self.state = WAITING
        self.since = time.monotonic()
        self.requests = 0


_UNPARSEABLE: list[tuple[type[BaseException], str]] = [
    (http_exceptions.BadHttpMethod, "not an HTTP request (unknown method)"),
    (http_exceptions.LineTooLong, "a request or header line is too long"),
    (http_exceptions.InvalidHeader, "a header is malformed"),
    (http_exceptions.BadStatusLine, "the request line is malformed"),
    (http_exceptions.TransferEncodingError, "the chunked body is malformed"),
    (http_exceptions.ContentLengthError, "the body does not match its Content-Length"),
]


class JsonErrorsRequestHandler(RequestHandler):
    """aiohttp's protocol, answering a request it cannot parse the way the API answers
    everything: JSON with a code (`MALFORMED_HTTP`), without echoing the request's bytes (a
    header line may hold an API key) and without the version banner."""

    __slots__ = ()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Log as aiohttp does (lobgw.gateway.logs tames it), answer as lobgw does."""
        super().handle_error(request, status, exc, message)  # logs; raises if already sent
        if status == 413:
            error = ApiError(ErrorCode.REQUEST_TOO_LARGE)
        elif 400 <= status < 500:
            reason = next((text for kind, text in _UNPARSEABLE if isinstance(exc, kind)),
                          None)
            error = ApiError(ErrorCode.MALFORMED_HTTP, reason)
        else:
            error = ApiError(ErrorCode.INTERNAL_ERROR)
        response = web.Response(status=status if status >= 400 else 400,
                                body=msgspec.json.encode(error.response()),
                                content_type="application/json",
                                headers={"Server": "lobgw"})
        response.force_close()
        return response


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, seen by the guard on the way in and out."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit or refuse the connection, then hand it to aiohttp."""
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses of it
        if not self.guard.admit(transport):
            self.refused = True
            transport.abort()
            return
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        if not self.refused:
            self.guard.forget(self.inner.transport)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Pass bytes to aiohttp."""
        if not self.refused:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Pass the end of input to aiohttp."""
        result: bool | None = None if self.refused else self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        """Flow control, as aiohttp wants it."""
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        """Flow control, as aiohttp wants it."""
        self.inner.resume_writing()


class ConnectionGuard:
    """See the module docstring."""

    def __init__(self, max_per_ip: int, header_timeout: float, keepalive: float,
                 trusted: list[str]) -> None:
        self.max_per_ip = max_per_ip
        self.header_timeout = header_timeout
        self.keepalive = keepalive
        self.trusted = set(trusted)
        self.connections: dict[asyncio.Transport, _Tracked] = {}
        self.per_ip: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0

    def factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory around aiohttp's."""
        def protocol() -> asyncio.Protocol:
            handler = inner()
            handler.__class__ = JsonErrorsRequestHandler  # same slots: only methods differ
            return GuardedProtocol(handler, self)
        return protocol

    def admit(self, transport: asyncio.Transport) -> bool:
        """Count a new connection, or refuse it when its address has too many."""
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        count = self.per_ip.get(peer, 0)
        if peer not in self.trusted and count >= self.max_per_ip:
            self.refused += 1
            return False
        self.per_ip[peer] = count + 1
        self.connections[transport] = _Tracked(transport, peer)
        return True

    def forget(self, transport: asyncio.Transport | None) -> None:
        """A connection closed."""
        tracked = self.connections.pop(transport, None) if transport is not None else None
        if tracked is not None:
            left = self.per_ip.get(tracked.peer, 1) - 1
            if left:
                self.per_ip[tracked.peer] = left
            else:
                self.per_ip.pop(tracked.peer, None)

    def started(self, request: web.Request) -> None:
        """A request's headers are complete (middleware)."""
        tracked = self.connections.get(request.transport)  # type: ignore[arg-type]
        if tracked is not None:
            tracked.state = BUSY
            tracked.requests += 1

    def finished(self, request: web.Request, upgraded: bool) -> None:
        """A request is answered: the connection waits for the next one (or is now a
        WebSocket, which keeps its own deadlines)."""
        tracked = self.connections.get(request.transport)  # type: ignore[arg-type]
        if tracked is not None:
            tracked.state = UPGRADED if upgraded else WAITING
            tracked.since = time.monotonic()

    def sweep(self, now: float | None = None) -> int:
        """Cut connections past their deadline; return how many."""
        now = time.monotonic() if now is None else now
        late = [tracked for tracked in self.connections.values() if tracked.state == WAITING
                and now - tracked.since > (self.keepalive if tracked.requests
                                           else self.header_timeout)]
        for tracked in late:
            tracked.transport.abort()
        self.timed_out += len(late)
        return len(late)


class GuardedSite(web.SockSite):
    """A site on a bound socket whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, sock: Any, guard: ConnectionGuard) -> None:
        super().__init__(runner, sock)
        self.guard = guard

    async def start(self) -> None:
        """Listen, with the guard around aiohttp's protocol."""
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(self.guard.factory(server), sock=self._sock,
                                                ssl=self._ssl_context, backlog=self._backlog)
