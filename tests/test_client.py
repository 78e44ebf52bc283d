"""The Python client recovering by itself, against a real gateway behind a real WebSocket
proxy that can drop or corrupt frames and cut connections (what a lossy network, a buggy
middlebox or a restart does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web

from lobgw.client import (
    BookGapError,
    BookResync,
    ChecksumError,
    ClientClosedError,
    ConnectionLostError,
    Disconnected,
    Dropped,
    LobgwClient,
    QueueOverflowError,
    Reconnected,
)
from lobgw.gateway.wire import BookSnapshotMessage, ExecutionMessage, TradeMessage
from tests.conftest import ALICE_KEY, BOB_KEY, Gateway

Tamper = Callable[[dict[str, Any]], dict[str, Any] | None]


class Proxy:
    """Forwards WebSocket frames between clients and the gateway; `tamper` sees every frame
    the gateway sends (return None to drop it); `cut()` drops every connection at once."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tamper: Tamper | None = None
        self.refuse = False
        self.connections: list[web.WebSocketResponse] = []
        self.accepted = 0

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            raise web.HTTPServiceUnavailable()
        downstream = web.WebSocketResponse(autoping=True)
        await downstream.prepare(request)
        self.accepted += 1
        self.connections.append(downstream)
        async with websockets.connect(self.upstream, max_size=None) as upstream:
            async def down() -> None:
                async for frame in upstream:
                    text = frame if isinstance(frame, str) else frame.decode()
                    if self.tamper is not None:
                        changed = self.tamper(json.loads(text))
                        if changed is None:
                            continue
                        text = json.dumps(changed)
                    await downstream.send_str(text)

            pump = asyncio.create_task(down())
            try:
                async for message in downstream:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await upstream.send(message.data)
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await pump
        return downstream

    async def cut(self) -> None:
        """Drop every client connection (as a restart or a network fault would)."""
        connections, self.connections = self.connections, []
        for connection in connections:
            await connection.close(code=1011, message=b"proxy cut")


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[tuple[Proxy, str]]:
    proxy = Proxy(gateway.ws_url)
    app = web.Application()
    app.router.add_get("/ws", proxy.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield proxy, f"ws://{host}:{port}/ws"
    await proxy.cut()
    await runner.cleanup()


async def rest_book(gateway: Gateway, depth: int = 10) -> dict[str, Any]:
    status, book, _ = await gateway.call("GET", f"/api/v1/symbols/BTC-USD/book?depth={depth}")
    assert status == 200
    return dict(book)


async def read_until_book_matches(client: LobgwClient, gateway: Gateway) -> list[Any]:
    """Read until the client's book is REST's (same seq and levels); return what was read."""
    seen: list[Any] = []
    async with asyncio.timeout(10):
        while True:
            rest = await rest_book(gateway)
            book = client.books.get("BTC-USD")
            if book is not None and book.seq == rest["seq"]:
                assert [(str(p), str(q)) for p, q in book.top("bids")] == [
                    tuple(level) for level in rest["bids"]]
                assert [(str(p), str(q)) for p, q in book.top("asks")] == [
                    tuple(level) for level in rest["asks"]]
                return seen
            with contextlib.suppress(TimeoutError):
                seen.append(await client.next_message(timeout=0.2))


def on_nth(kind: str, n: int, change: Tamper) -> Tamper:
    """A tamper that applies `change` to the `n`th frame of type `kind` only."""
    seen = 0

    def tamper(frame: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal seen
        if frame.get("type") == kind:
            seen += 1
            if seen == n:
                return change(frame)
        return frame
    return tamper


def corrupt_checksum(frame: dict[str, Any]) -> dict[str, Any]:
    frame["checksum"] ^= 1
    return frame


async def churn_book(client: LobgwClient, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await client.place("BTC-USD", "BUY", "0.01", price=str(50 + i))


async def test_an_injected_gap_resyncs_the_book(gateway: Gateway,
                                                proxy: tuple[Proxy, str]) -> None:
    relay, url = proxy
    relay.tamper = on_nth("book_update", 3, lambda frame: None)
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice, \
            await LobgwClient.connect(url) as watcher:
        await watcher.subscribe("book", "BTC-USD", depth=10)
        await churn_book(alice, 8)
        seen = await read_until_book_matches(watcher, gateway)
        resyncs = [m for m in seen if isinstance(m, BookResync)]
        assert len(resyncs) == 1 and "chains on" in resyncs[0].reason
        assert [type(e) for e in watcher.book_errors] == [BookGapError]
        assert sum(isinstance(m, BookSnapshotMessage) for m in seen) == 2  # first, resync
        await churn_book(alice, 5, start=8)  # and it keeps following
        await read_until_book_matches(watcher, gateway)
        assert len(watcher.book_errors) == 1


async def test_a_corrupted_checksum_resyncs_the_book(gateway: Gateway,
                                                     proxy: tuple[Proxy, str]) -> None:
    relay, url = proxy
    relay.tamper = on_nth("book_update", 2, corrupt_checksum)
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice, \
            await LobgwClient.connect(url) as watcher:
        await watcher.subscribe("book", "BTC-USD", depth=10)
        await churn_book(alice, 6)
        seen = await read_until_book_matches(watcher, gateway)
        assert [type(e) for e in watcher.book_errors] == [ChecksumError]
        assert sum(isinstance(m, BookResync) for m in seen) == 1


async def test_books_change_only_when_their_message_is_read(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice, \
            await LobgwClient.connect(gateway.ws_url) as watcher:
        await watcher.subscribe("book", "BTC-USD", depth=10)
        snapshot = await watcher.next_message("book_snapshot")
        assert watcher.books["BTC-USD"].seq == snapshot.seq
        await churn_book(alice, 3)
        await alice.ping()
        await asyncio.sleep(0.1)  # the updates have arrived, but are not read yet
        assert watcher.books["BTC-USD"].seq == snapshot.seq
        update = await watcher.next_message("book_update")
        assert watcher.books["BTC-USD"].seq == update.seq


async def test_reconnects_and_resumes_executions_and_books(gateway: Gateway,
                                                           proxy: tuple[Proxy, str]) -> None:
    relay, url = proxy
    async with await LobgwClient.connect(url, api_key=ALICE_KEY, backoff_initial=0.05) as alice, \
            await LobgwClient.connect(gateway.ws_url, api_key=BOB_KEY) as bob:
        await alice.subscribe("executions")
        await alice.subscribe("book", "BTC-USD", depth=10)
        for price in ("100", "101", "102"):
            await alice.place("BTC-USD", "SELL", "1", price=price)
        reports: list[ExecutionMessage] = []
        while len(reports) < 3:
            message = await alice.next_message()
            if isinstance(message, ExecutionMessage):
                reports.append(message)
        relay.refuse = True  # down for a while: reconnecting fails, with backoff
        await relay.cut()
        assert isinstance(await alice.next_message("disconnected"), Disconnected)
        with pytest.raises(ConnectionError):
            alice.send_nowait({"op": "ping"})  # not connected: refused at once
        await bob.place("BTC-USD", "BUY", "2", price="101")  # fills two of alice's orders
        await asyncio.sleep(0.3)
        relay.refuse = False
        back = await alice.next_message("reconnected")
        assert isinstance(back, Reconnected) and back.attempts >= 2
        while len(reports) < 5:
            message = await alice.next_message()
            if isinstance(message, ExecutionMessage):
                reports.append(message)
        assert [r.account_seq for r in reports] == [1, 2, 3, 4, 5]
        assert [r.event.value for r in reports[3:]] == ["fill", "fill"]
        await read_until_book_matches(alice, gateway)  # resubscribed, fresh snapshot
        assert alice.reconnects == 1
        await alice.place("BTC-USD", "SELL", "1", price="103")  # requests work again
        live = await alice.next_message("execution")
        assert live.account_seq == 6


async def test_a_missed_execution_is_replayed_in_order(gateway: Gateway,
                                                       proxy: tuple[Proxy, str]) -> None:
    relay, url = proxy
    relay.tamper = on_nth("execution", 2, lambda frame: None)
    async with await LobgwClient.connect(url, api_key=ALICE_KEY) as alice:
        await alice.subscribe("executions")
        for price in ("100", "101", "102", "103"):
            await alice.place("BTC-USD", "SELL", "1", price=price)
        seen = [await alice.next_message("execution") for _ in range(4)]
        assert [(r.account_seq, r.order.price) for r in seen] == [
            (1, "100.0"), (2, "101.0"), (3, "102.0"), (4, "103.0")]
        with pytest.raises(TimeoutError):  # no duplicates follow
            await alice.next_message("execution", timeout=0.3)


async def test_requests_after_close_or_a_drop_raise(gateway: Gateway,
                                                    proxy: tuple[Proxy, str]) -> None:
    relay, url = proxy
    relay.tamper = lambda frame: None if frame.get("type") == "pong" else frame
    alice = await LobgwClient.connect(url, api_key=ALICE_KEY, backoff_initial=0.05)
    unanswered = asyncio.ensure_future(alice.ping())
    await asyncio.sleep(0.1)
    await relay.cut()
    with pytest.raises(ConnectionLostError):  # in flight when it dropped: never resent
        await unanswered
    await alice.next_message("reconnected")
    await alice.close()
    for request in (alice.ping(), alice.place("BTC-USD", "BUY", "1", price="10")):
        with pytest.raises(ClientClosedError):
            await request
    with pytest.raises(ClientClosedError):
        alice.send_nowait({"op": "ping"})
    with pytest.raises(ClientClosedError):
        await alice.next_message()


async def test_gives_up_when_the_key_is_refused(gateway: Gateway,
                                                proxy: tuple[Proxy, str]) -> None:
    relay, url = proxy
    alice = await LobgwClient.connect(url, api_key=ALICE_KEY, backoff_initial=0.05)
    relay.tamper = lambda frame: ({"type": "error", "id": frame["id"], "error": {
        "code": "UNAUTHORIZED", "reason": "unknown API key", "field": "api_key"}}
        if frame.get("type") == "ack" and frame.get("op") == "auth" else frame)
    await relay.cut()
    await alice.next_message("disconnected")
    with pytest.raises(ClientClosedError):
        await alice.next_message(timeout=5)
    assert alice.closed
    await alice.close()


async def test_overflow_drop_oldest_says_so_and_the_book_recovers(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice, \
            await LobgwClient.connect(gateway.ws_url, max_queue=5) as watcher:
        await watcher.subscribe("book", "BTC-USD", depth=10)
        await watcher.subscribe("trades", "BTC-USD")
        await churn_book(alice, 30)  # 30 updates while the watcher reads nothing
        await alice.ping()
        await asyncio.sleep(0.2)
        first = await watcher.next_message()
        assert isinstance(first, Dropped) and first.count >= 20
        assert watcher.dropped == first.count
        seen = await read_until_book_matches(watcher, gateway)
        assert any(isinstance(m, BookResync) for m in seen)  # the gap it left, mended


async def test_overflow_raise_stops_reading_with_an_error(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice, \
            await LobgwClient.connect(gateway.ws_url, api_key=BOB_KEY) as bob, \
            await LobgwClient.connect(gateway.ws_url, max_queue=5, overflow="raise") as watcher:
        await watcher.subscribe("trades", "BTC-USD")
        await alice.place("BTC-USD", "SELL", "1", price="100")
        for _ in range(10):
            await bob.place("BTC-USD", "BUY", "0.01", price="100")
        with pytest.raises(QueueOverflowError):
            async with asyncio.timeout(10):
                while True:
                    assert isinstance(await watcher.next_message(), TradeMessage)
        assert watcher.closed
