"""Delivery at the edges: a client that keeps reading never loses a message, replies come in
request order, subscriptions are processed in order, and private executions resume after a
reconnect without a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import websockets

from lobgw.client import LobgwClient
from lobgw.gateway.keys import METRICS, STATE
from lobgw.gateway.wire import TradeMessage
from tests.conftest import ALICE_KEY, BOB_KEY, Gateway, churn, stalled_reader


async def connect(gateway: Gateway, key: str | None = ALICE_KEY, **options: Any
                  ) -> LobgwClient:
    return await LobgwClient.connect(gateway.ws_url, api_key=key, **options)


async def place_many(client: LobgwClient, count: int, side: str, price: str) -> None:
    """`count` one-lot orders, pipelined."""
    for start in range(0, count, 500):
        futures = [client.send_nowait({"op": "place", "order": {
            "symbol": "BTC-USD", "side": side, "quantity": "0.01", "price": price}})
            for _ in range(min(500, count - start))]
        await asyncio.gather(*futures)


async def test_a_5000_fill_sweep_reaches_a_reading_subscriber_and_the_maker_in_full(
        gateway: Gateway) -> None:
    async with await connect(gateway) as maker, await connect(gateway, key=None) as watcher, \
            await connect(gateway, BOB_KEY) as taker:
        await place_many(maker, 5_000, "SELL", "100")
        await maker.subscribe("executions")
        await watcher.subscribe("trades", "BTC-USD")
        await taker.send_nowait({"op": "place", "order": {
            "symbol": "BTC-USD", "side": "BUY", "quantity": "50", "type": "MARKET"}})
        trades = fills = 0
        async with asyncio.timeout(60):
            while trades < 5_000:
                trades += isinstance(await watcher.next_message("trade", timeout=30), TradeMessage)
            while fills < 5_000:
                report = await maker.next_message("execution", timeout=30)
                fills += report.event.value == "fill"
        assert watcher.close_code is None and maker.close_code is None


async def test_a_slow_consumer_that_never_reads_is_cut_off(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(runtime={"slow_consumer_bytes": 65536,
                                      "slow_consumer_seconds": 0.2,
                                      "slow_consumer_close_seconds": 0.5})
    silent = await stalled_reader(gateway)
    async with await connect(gateway) as alice:
        await churn(alice)
    state = gateway.app[STATE]
    async with asyncio.timeout(30):
        while gateway.app[METRICS].slow_disconnects < 1:
            await asyncio.sleep(0.02)
        while state.connections:  # the handler ended: the socket is gone from the server
            await asyncio.sleep(0.02)
    silent.transport.abort()


async def test_executions_resume_from_the_last_private_sequence_seen(
        gateway: Gateway) -> None:
    async with await connect(gateway) as alice:
        await alice.subscribe("executions")
        for price in ("100", "101", "102"):
            await alice.place("BTC-USD", "SELL", "1", price=price)
        seen = [await alice.next_message("execution") for _ in range(3)]
        assert [r.account_seq for r in seen] == [1, 2, 3]
    # while alice is away: bob takes two of her orders, she is filled; she also trades ETH
    async with await connect(gateway, BOB_KEY) as bob:
        await bob.place("BTC-USD", "BUY", "2", price="101")
    async with await connect(gateway) as alice:
        await alice.place("ETH-USD", "BUY", "1", price="50")
        await alice.send_nowait({"op": "subscribe", "channel": "executions",
                                 "since": {"BTC-USD": seen[-1].account_seq}})
        replayed = [await alice.next_message("execution") for _ in range(3)]
        assert [(r.symbol, r.account_seq, r.event.value) for r in replayed] == [
            ("BTC-USD", 4, "fill"), ("BTC-USD", 5, "fill"), ("ETH-USD", 1, "accepted")]
        assert [r.order.status.value for r in replayed[:2]] == ["FILLED", "FILLED"]
        # and then live, numbered on
        await alice.place("BTC-USD", "SELL", "1", price="105")
        live = await alice.next_message("execution")
        assert (live.account_seq, live.event.value) == (6, "accepted")


REPLY_TYPES = {"ack", "error", "pong", "subscribed", "unsubscribed"}


async def replies(raw: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` replies on a raw connection (pushed market data skipped)."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while len(found) < count:
            message = msgspec.json.decode(await raw.recv())
            if message["type"] in REPLY_TYPES:
                found.append(message)
    return found


async def test_pipelined_mixed_ops_are_answered_in_request_order(gateway: Gateway) -> None:
    async with websockets.connect(gateway.ws_url) as raw:
        await raw.send(msgspec.json.encode({"op": "auth", "id": 0, "api_key": ALICE_KEY}).decode())
        assert (await replies(raw, 1))[0]["type"] == "ack"
        requests: list[Any] = []
        for round_number in range(40):
            base = round_number * 100
            requests += [
                {"op": "place", "id": base + 1, "order": {"symbol": "BTC-USD", "side": "BUY",
                                                           "quantity": "1", "price": "90"}},
                {"op": "place", "id": base + 2, "order": {"symbol": "ETH-USD", "side": "SELL",
                                                           "quantity": "1", "price": "5000"}},
                {"op": "ping", "id": base + 3},
                {"op": "place", "id": base + 4, "order": {"symbol": "ETH-USD", "side": "BUY",
                                                           "quantity": "1", "price": "1.001"}},
                {"op": "cancel", "id": base + 5, "order_id": 10**12},
                {"op": "amend", "id": base + 6, "order_id": 10**12, "quantity": "2"},
                "not json at all",
                {"op": "subscribe", "id": base + 8, "channel": "book", "symbol": "ETH-USD"},
                {"op": "unsubscribe", "id": base + 9, "channel": "book", "symbol": "ETH-USD"},
                {"op": "cancel_all", "id": base + 10, "symbol": "BTC-USD"},
                {"op": "auth", "id": base + 11, "api_key": BOB_KEY},
                {"op": "subscribe", "id": base + 12, "channel": "quotes", "symbol": "NOPE"},
            ]
        for request in requests:  # all written before the first reply is read
            await raw.send(request if isinstance(request, str)
                           else msgspec.json.encode(request).decode())
        got = await replies(raw, len(requests))
        assert [reply.get("id") for reply in got] == [
            None if isinstance(request, str) else request["id"] for request in requests]
        codes = [reply["error"]["code"] for reply in got[:12] if reply["type"] == "error"]
        assert codes == ["PRICE_OFF_TICK", "ORDER_NOT_FOUND", "ORDER_NOT_FOUND",
                         "MALFORMED_JSON", "ALREADY_AUTHENTICATED", "UNKNOWN_SYMBOL"]


async def test_subscribe_and_unsubscribe_pipelined_in_one_write_leave_no_stream(
        gateway: Gateway) -> None:
    async with websockets.connect(gateway.ws_url) as raw, await connect(gateway) as alice:
        await raw.send('{"op":"subscribe","id":1,"channel":"book","symbol":"BTC-USD"}\n')
        await raw.send('{"op":"unsubscribe","id":2,"channel":"book","symbol":"BTC-USD"}')
        assert [r["type"] for r in await replies(raw, 2)] == ["subscribed", "unsubscribed"]
        await alice.place("BTC-USD", "BUY", "1", price="95")
        await raw.send('{"op":"ping","id":3}')
        pushed = []
        async with asyncio.timeout(5):
            while True:
                message = msgspec.json.decode(await raw.recv())
                if message["type"] == "pong":
                    break
                pushed.append(message["type"])
        assert "book_update" not in pushed


async def test_resubscribing_at_another_depth_replaces_the_stream(gateway: Gateway) -> None:
    async with websockets.connect(gateway.ws_url) as raw, await connect(gateway) as alice:
        await raw.send('{"op":"subscribe","id":1,"channel":"book","symbol":"BTC-USD",'
                       '"depth":10}')
        await raw.send('{"op":"subscribe","id":2,"channel":"book","symbol":"BTC-USD",'
                       '"depth":25}')
        await alice.place("BTC-USD", "BUY", "1", price="95")
        await raw.send('{"op":"ping","id":3}')
        seen: list[tuple[str, int]] = []
        async with asyncio.timeout(5):
            while True:
                message = msgspec.json.decode(await raw.recv())
                if message["type"] == "pong":
                    break
                if message["type"] in ("book_snapshot", "book_update"):
                    seen.append((message["type"], message["depth"]))
                    assert message["timestamp"] >= 0
        assert seen == [("book_snapshot", 25), ("book_update", 25)]
