"""Delivery at the edges: a client that keeps reading never loses a message, replies come in
request order, subscriptions are processed in order, and private executions resume after a
reconnect without a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import websockets

from lobgw.client import LobgwClient
from lobgw.gateway.keys import METRICS, STATE
from tests.conftest import ALICE_KEY, BOB_KEY, Gateway


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
                trades += (await watcher.next_message("trade", timeout=30))["type"] == "trade"
            while fills < 5_000:
                report = await maker.next_message("execution", timeout=30)
                fills += report["event"] == "fill"
        assert watcher.close_code is None and maker.close_code is None


async def test_a_slow_consumer_that_never_reads_is_cut_off(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(runtime={"slow_consumer_bytes": 65536,
                                      "slow_consumer_seconds": 0.2,
                                      "slow_consumer_close_seconds": 0.5})
    async with await connect(gateway) as alice:  # 500 levels: every snapshot is ~20 kB
        await asyncio.gather(*(alice.send_nowait({"op": "place", "order": {
            "symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": str(1000 + i)}})
            for i in range(500)))
    silent = await websockets.connect(gateway.ws_url, max_queue=1)
    silent.transport.pause_reading()
    for i in range(600):
        await silent.send(f'{{"op":"subscribe","id":{i},"channel":"book",'
                          f'"symbol":"BTC-USD","depth":1000}}')
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
        assert [r["account_seq"] for r in seen] == [1, 2, 3]
    # while alice is away: bob takes two of her orders, she is filled; she also trades ETH
    async with await connect(gateway, BOB_KEY) as bob:
        await bob.place("BTC-USD", "BUY", "2", price="101")
    async with await connect(gateway) as alice:
        await alice.place("ETH-USD", "BUY", "1", price="50")
        await alice.send_nowait({"op": "subscribe", "channel": "executions",
                                 "since": {"BTC-USD": seen[-1]["account_seq"]}})
        replayed = [await alice.next_message("execution") for _ in range(3)]
        assert [(r["symbol"], r["account_seq"], r["event"]) for r in replayed] == [
            ("BTC-USD", 4, "fill"), ("BTC-USD", 5, "fill"), ("ETH-USD", 1, "accepted")]
        assert [r["order"]["status"] for r in replayed[:2]] == ["FILLED", "FILLED"]
        # and then live, numbered on
        await alice.place("BTC-USD", "SELL", "1", price="105")
        live = await alice.next_message("execution")
        assert (live["account_seq"], live["event"]) == (6, "accepted")
