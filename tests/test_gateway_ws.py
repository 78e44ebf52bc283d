"""WebSocket API against a real server, with real `websockets` clients (lobgw.client)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import websockets

from lobgw.client import ClientError, LobgwClient
from lobgw.gateway.keys import EXCHANGE, METRICS
from lobgw.gateway.wire import book_checksum
from tests.conftest import ALICE_KEY, BOB_KEY, Gateway, churn, stalled_reader


async def connect(gateway: Gateway, key: str | None = ALICE_KEY, **options: Any) -> LobgwClient:
    return await LobgwClient.connect(gateway.ws_url, api_key=key, **options)


async def test_order_entry_acks_and_errors(gateway: Gateway) -> None:
    async with await connect(gateway) as alice:
        ack = await alice.place("BTC-USD", "SELL", "2", price="100", client_order_id="w1")
        assert (ack.order.status.value, ack.order.remaining_quantity) == ("NEW", "2.00")
        amended = await alice.amend(client_order_id="w1", quantity="1.5")
        assert amended.order.quantity == "1.50"
        amended = await alice.amend(order_id=ack.order.order_id, price="101")
        assert amended.order.price == "101.0"
        canceled = await alice.cancel(order_id=ack.order.order_id)
        assert canceled.order.status.value == "CANCELED"
        with pytest.raises(ClientError) as refused:
            await alice.cancel(order_id=ack.order.order_id)
        assert refused.value.code == "ORDER_NOT_FOUND"
        with pytest.raises(ClientError) as refused:
            await alice.place("BTC-USD", "BUY", "1", price="100.1")
        assert (refused.value.code, refused.value.field) == ("PRICE_OFF_TICK", "order.price")
        with pytest.raises(ClientError) as refused:
            await alice.place("NOPE", "BUY", "1", price="100")
        assert (refused.value.code, refused.value.field) == ("UNKNOWN_SYMBOL", "order.symbol")
        with pytest.raises(ClientError) as refused:
            await alice.place("BTC-USD", "BUY", "1e3", price="100")
        assert (refused.value.code, refused.value.field) == ("INVALID_QUANTITY",
                                                             "order.quantity")
        await alice.place("BTC-USD", "BUY", "1", price="90")
        await alice.place("ETH-USD", "BUY", "1", price="90")
        result = await alice.cancel_all()
        assert result.canceled == 2
        assert await alice.ping() > 0


async def test_requests_need_auth_and_bad_messages_get_coded_errors(gateway: Gateway) -> None:
    async with websockets.connect(gateway.ws_url) as raw:
        async def ask(message: bytes | str) -> dict[str, Any]:
            await raw.send(message)
            reply: dict[str, Any] = msgspec.json.decode(await raw.recv())
            return reply

        reply = await ask('{"op":"place","id":"r1","order":{"symbol":"BTC-USD","side":"BUY",'
                          '"quantity":"1","price":"10"}}')
        assert (reply["type"], reply["id"], reply["error"]["code"]) == (
            "error", "r1", "UNAUTHORIZED")
        reply = await ask("{oops")
        assert (reply["id"], reply["error"]["code"]) == (None, "MALFORMED_JSON")
        reply = await ask('{"op":"dance","id":5}')
        assert (reply["id"], reply["error"]["code"], reply["error"]["field"]) == (
            5, "INVALID_VALUE", "op")
        reply = await ask('{"op":"subscribe","id":6,"channel":"book","symbol":"BTC-USD",'
                          '"depth":7}')
        assert (reply["error"]["code"], reply["error"]["field"]) == ("OUT_OF_RANGE", "depth")
        reply = await ask('{"op":"subscribe","id":7,"channel":"trades","symbol":"NOPE"}')
        assert reply["error"]["code"] == "UNKNOWN_SYMBOL"
        reply = await ask('{"op":"auth","id":8,"api_key":"nope"}')
        assert reply["error"]["code"] == "UNAUTHORIZED"
        assert "nope" not in str(reply)
        reply = await ask('{"op":"auth","id":9,"api_key":"' + ALICE_KEY + '"}')
        assert (reply["type"], reply["op"]) == ("ack", "auth")
        reply = await ask('{"op":"place","id":10,"order":{"symbol":"BTC-USD","side":"BUY",'
                          '"quantity":"1","price":"10","bogus":1}}')
        assert (reply["error"]["code"], reply["error"]["field"]) == (
            "UNKNOWN_FIELD", "order.bogus")
        await raw.send(b"\x00binary")
        reply = msgspec.json.decode(await raw.recv())
        assert reply["error"]["code"] == "UNSUPPORTED_MESSAGE"


async def test_pipelined_orders_are_acked_in_order(gateway: Gateway) -> None:
    async with await connect(gateway) as alice:
        futures = [alice.send_nowait({"op": "place", "order": {
            "symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": str(50 + i)}})
            for i in range(200)]
        acks = await asyncio.gather(*futures)
        order_ids = [ack.order.order_id for ack in acks]
        assert order_ids == sorted(order_ids)
        assert len(set(order_ids)) == 200


async def test_ownership_over_websocket(gateway: Gateway) -> None:
    async with await connect(gateway) as alice, await connect(gateway, BOB_KEY) as bob:
        ack = await alice.place("BTC-USD", "BUY", "1", price="99", client_order_id="mine")
        for attempt in (bob.cancel(order_id=ack.order.order_id),
                        bob.cancel(client_order_id="mine"),
                        bob.amend(order_id=ack.order.order_id, quantity="2")):
            with pytest.raises(ClientError) as refused:
                await attempt
            assert refused.value.code == "ORDER_NOT_FOUND"
        assert (await bob.cancel_all()).canceled == 0
        assert (await alice.cancel(client_order_id="mine")).order.status.value == "CANCELED"


async def test_public_channels_and_private_executions(gateway: Gateway) -> None:
    async with await connect(gateway) as alice, await connect(gateway, BOB_KEY) as bob, \
            await connect(gateway, key=None) as watcher:
        await alice.place("BTC-USD", "SELL", "1", price="100")
        await watcher.subscribe("trades", "BTC-USD")
        await watcher.subscribe("quotes", "BTC-USD")
        quote = await watcher.next_message("quote")
        assert (quote.ask, quote.ask_size, quote.bid) == ("100.0", "1.00", None)
        with pytest.raises(ClientError):
            await watcher.subscribe("executions")  # private: needs auth
        await alice.subscribe("executions")
        await bob.place("BTC-USD", "BUY", "0.4", price="100")
        trade = await watcher.next_message("trade")
        assert (trade.price, trade.quantity, trade.aggressor.value) == ("100.0", "0.40",
                                                                          "BUY")
        assert trade.seq == 3
        quote = await watcher.next_message("quote")
        assert (quote.ask_size, quote.seq) == ("0.60", 3)
        report = await alice.next_message("execution")
        assert (report.event.value, report.fill.liquidity.value) == ("fill", "MAKER")
        assert report.order.remaining_quantity == "0.60"
        await watcher.unsubscribe("trades", "BTC-USD")
        await bob.place("BTC-USD", "BUY", "0.1", price="100")
        quote = await watcher.next_message("quote")
        assert quote.ask_size == "0.50"
        with pytest.raises(ClientError) as refused:
            await watcher.unsubscribe("trades", "BTC-USD")
        assert refused.value.code == "INVALID_VALUE"


async def test_heartbeat_on_idle_subscription(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(runtime={"heartbeat_seconds": 0.2})
    async with await connect(gateway, key=None) as watcher:
        await watcher.subscribe("trades", "ETH-USD")
        beat = await watcher.next_message("heartbeat", timeout=3)
        assert beat.time > 0


async def test_local_book_from_updates_equals_rest_depth(gateway: Gateway) -> None:
    rng = random.Random(5)
    async with await connect(gateway) as alice, await connect(gateway, BOB_KEY) as bob, \
            await connect(gateway, key=None) as watcher:
        await watcher.subscribe("book", "BTC-USD", depth=10)
        await watcher.subscribe("book", "ETH-USD", depth=25)
        live: list[tuple[LobgwClient, int]] = []
        for step in range(600):
            client = alice if rng.random() < 0.5 else bob
            roll = rng.random()
            try:
                if roll < 0.6 or not live:
                    symbol = "BTC-USD" if rng.random() < 0.7 else "ETH-USD"
                    side = rng.choice(["BUY", "SELL"])
                    offset = rng.randint(-8, 10)
                    if symbol == "BTC-USD":
                        price = str(Decimal(100) + (offset if side == "SELL" else -offset)
                                    * Decimal("0.5"))
                        quantity = str(Decimal(rng.randint(1, 300)) / 100)
                    else:
                        price = str(Decimal(2000) + (offset if side == "SELL" else -offset)
                                    * Decimal("0.01"))
                        quantity = str(Decimal(rng.randint(1, 30)) / 10)
                    ack = await client.place(symbol, side, quantity, price=price,
                                             stp="CANCEL_MAKER")
                    if ack.order.status.value in ("NEW", "PARTIALLY_FILLED"):
                        live.append((client, ack.order.order_id))
                elif roll < 0.85:
                    owner, order_id = live.pop(rng.randrange(len(live)))
                    await owner.cancel(order_id=order_id)
                else:
                    owner, order_id = rng.choice(live)
                    await owner.amend(order_id=order_id,
                                      quantity=str(Decimal(rng.randint(1, 30)) / 10))
            except ClientError as error:
                assert error.code in ("ORDER_NOT_FOUND", "STP", "QUANTITY_OFF_LOT"), error
                live = [(c, o) for c, o in live if o != getattr(error, "order_id", None)]
            if step % 100 == 99:
                await compare_books(gateway, watcher)
        await compare_books(gateway, watcher)
        assert watcher.book_errors == []
        assert watcher.books["BTC-USD"].updates > 100


async def compare_books(gateway: Gateway, watcher: LobgwClient) -> None:
    for symbol, depth in (("BTC-USD", 10), ("ETH-USD", 25)):
        status, rest, _ = await gateway.call("GET", f"/api/v1/symbols/{symbol}/book"
                                             f"?depth={depth}")
        assert status == 200
        # read until the watcher has seen up to the REST snapshot (books advance as the
        # messages that change them are read)
        while symbol not in watcher.books or watcher.books[symbol].seq < rest["seq"]:
            await watcher.next_message()
        book = watcher.books[symbol]
        assert book.seq == rest["seq"]
        assert [(str(p), str(q)) for p, q in book.top("bids")] == [
            (p, q) for p, q in rest["bids"]]
        assert [(str(p), str(q)) for p, q in book.top("asks")] == [
            (p, q) for p, q in rest["asks"]]


async def test_book_resubscribe_gives_fresh_snapshot_and_gaps_are_detected(
    gateway: Gateway
) -> None:
    async with await connect(gateway) as alice, await connect(gateway, key=None) as watcher:
        await alice.place("BTC-USD", "BUY", "1", price="99")
        await watcher.subscribe("book", "BTC-USD", depth=10)
        snapshot = await watcher.next_message("book_snapshot")
        assert snapshot.bids == [("99.0", "1.00")] and snapshot.seq == 1
        await alice.place("BTC-USD", "BUY", "2", price="99")
        update = await watcher.next_message("book_update")
        assert (update.prev_seq, update.bids) == (1, [("99.0", "3.00")])
        # a client whose copy no longer chains on notices, drops the book and resubscribes
        book = watcher.books["BTC-USD"]
        book.seq = 0
        await alice.place("BTC-USD", "BUY", "1", price="98")
        notice = await watcher.next_message("book_resync")
        assert notice.symbol == "BTC-USD" and "chains on" in notice.reason
        assert "BTC-USD" not in watcher.books and len(watcher.book_errors) == 1
        snapshot = await watcher.next_message("book_snapshot")
        assert snapshot.bids == [("99.0", "3.00"), ("98.0", "1.00")]
        assert watcher.books["BTC-USD"].seq == snapshot.seq


async def test_cancel_on_disconnect(gateway: Gateway) -> None:
    keeper = await connect(gateway)
    leaver = await connect(gateway, cancel_on_disconnect=True)
    kept = await keeper.place("BTC-USD", "BUY", "1", price="90")
    gone = await leaver.place("BTC-USD", "BUY", "1", price="91")
    await leaver.close()
    for _ in range(100):
        _, info, _ = await gateway.call("GET", f"/api/v1/orders/{gone.order.order_id}",
                                        ALICE_KEY)
        if info["status"] == "CANCELED":
            break
        await asyncio.sleep(0.02)
    assert info["status"] == "CANCELED"
    _, info, _ = await gateway.call("GET", f"/api/v1/orders/{kept.order.order_id}", ALICE_KEY)
    assert info["status"] == "NEW"
    await keeper.close()


async def test_websocket_rate_limit_errors_then_closes(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_key_rate": 1, "per_key_burst": 2,
                                          "ws_violations_before_close": 3})
    async with websockets.connect(gateway.ws_url) as raw:
        await raw.send('{"op":"auth","id":1,"api_key":"' + ALICE_KEY + '"}')
        assert msgspec.json.decode(await raw.recv())["type"] == "ack"
        replies = []
        for request_id in range(2, 7):
            await raw.send(f'{{"op":"ping","id":{request_id}}}')
            reply = msgspec.json.decode(await raw.recv())
            replies.append(reply["type"] if reply["type"] == "pong"
                           else reply["error"]["code"])
        # a burst of 2, then refusals; the third refusal in a row closes the connection
        assert replies == ["pong", "pong", "RATE_LIMITED", "RATE_LIMITED", "RATE_LIMITED"]
        with pytest.raises(websockets.ConnectionClosed):
            await raw.recv()
        assert raw.close_code == 1008


async def test_slow_consumer_is_closed_while_others_and_the_actor_go_on(
    gateways: Callable[..., Any]
) -> None:
    gateway = await gateways(runtime={"slow_consumer_bytes": 65536,
                                      "slow_consumer_seconds": 0.2})
    async with await connect(gateway) as alice:
        for i in range(500):  # a deep book makes each snapshot large
            await alice.send_nowait({"op": "place", "order": {
                "symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": str(1000 + i)}})
        await alice.ping()
        healthy = await connect(gateway, key=None)
        await healthy.subscribe("trades", "BTC-USD")
        slow = await stalled_reader(gateway)  # a client that stops reading the book
        transport = slow.transport
        await churn(alice)
        metrics = gateway.app[METRICS]
        for _ in range(300):
            if metrics.slow_disconnects >= 1:
                break
            await asyncio.sleep(0.02)
        assert metrics.slow_disconnects == 1
        transport.resume_reading()
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await slow.recv()
        # it takes its close frame in time (else the connection would be cut)
        assert slow.close_code == 4008
        # The others go on: a trade still reaches the healthy subscriber.
        async with await connect(gateway, BOB_KEY) as bob:
            await bob.place("BTC-USD", "SELL", "1", price="1000")
        trade = await healthy.next_message("trade")
        assert trade.price == "1499.0"
        assert gateway.app[EXCHANGE].actor("BTC-USD").running
        await healthy.close()


async def test_replay_into_a_running_gateway(gateway: Gateway, tmp_path: Any) -> None:
    from lobgw.sim.replay import replay_into

    flow = tmp_path / "flow.csv"
    flow.write_text("ts,msg_type,side,price,qty,order_id\n"
                    "1,ADD,SELL,101.0,2,1\n"
                    "2,ADD,SELL,102.0,1,2\n"
                    "3,ADD,BUY,99.5,3,3\n"
                    "4,CANCEL,,,,2\n"
                    "5,AMEND,,99.0,,3\n")
    spec = gateway.app[EXCHANGE].spec("BTC-USD")
    async with await connect(gateway, key=None) as watcher:
        await watcher.subscribe("book", "BTC-USD")
        summary = await replay_into(gateway.ws_url, ALICE_KEY, flow, "csv", spec, speed=None)
        assert summary.rows == 5 and summary.commands == 5 and not summary.errors
        _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
        assert (book["bids"], book["asks"]) == ([["99.0", "3.00"]], [["101.0", "2.00"]])
        await watcher.next_message("book_update")  # subscribers saw it live


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from lobgw.gateway.logs import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("json", "INFO")
        logging.getLogger("lobgw.access").info("GET /x 200",
                                               extra={"status": 200, "path": "/x"})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = msgspec.json.decode(line)
    assert (entry["level"], entry["logger"], entry["status"], entry["path"]) == (
        "INFO", "lobgw.access", 200, "/x")
    assert entry["message"] == "GET /x 200" and entry["time"].endswith("Z")


def test_book_checksum_is_kraken_style_crc32_of_the_top_ten() -> None:
    # "100.5","1.25" | "99.0","0.50" -> "1005" "125" "990" "50": crc32(b"100512599050")
    assert book_checksum([("100.5", "1.25")], [("99.0", "0.50")]) == 1943796589
    # only the top 10 asks count: "1001" ... "1091" (level 11 at 111 left out), then the bid
    asks = [(str(100 + i), "1") for i in range(11)]
    assert book_checksum(asks, [("99.00", "50")]) == 2000634541
