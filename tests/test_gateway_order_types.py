"""Stops, icebergs, GTD and DAY through the gateway: REST and WebSocket order entry, their
validation codes, execution reports (triggered, refreshed, expired) and the actor's expiry
timer, against a real server with real clients."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from lobgw.actors.journal import read_journal
from lobgw.book.types import Side
from lobgw.client import ClientError, LobgwClient
from lobgw.gateway.keys import EXCHANGE, HUB
from tests.conftest import ALICE_KEY, BOB_KEY, Gateway
from tests.test_gateway_rest import order

FUTURE = time.time_ns() + 3600 * 10**9

REFUSALS = [
    (order(type="STOP", price=None), "MISSING_STOP_PRICE", "stop_price"),
    (order(type="STOP", price=None, stop_price="100.3"), "PRICE_OFF_TICK", "stop_price"),
    (order(type="STOP_LIMIT", price=None, stop_price="100"), "MISSING_PRICE", "price"),
    (order(type="STOP", stop_price="100"), "PRICE_NOT_ALLOWED", "price"),
    (order(stop_price="100"), "STOP_PRICE_NOT_ALLOWED", "stop_price"),
    (order(type="STOP", price=None, stop_price="100", time_in_force="FOK"), "INVALID_VALUE",
     "time_in_force"),
    (order(quantity="1", display_quantity="2"), "DISPLAY_ABOVE_QUANTITY", "display_quantity"),
    (order(quantity="1", display_quantity="0.005"), "QUANTITY_OFF_LOT", "display_quantity"),
    (order(type="MARKET", price=None, display_quantity="1"), "DISPLAY_NOT_ALLOWED",
     "display_quantity"),
    (order(time_in_force="IOC", display_quantity="1"), "DISPLAY_NOT_ALLOWED",
     "display_quantity"),
    (order(time_in_force="GTD"), "MISSING_EXPIRE_TIME", "expire_time"),
    (order(time_in_force="GTD", expire_time=time.time_ns() - 10**9), "EXPIRE_TIME_IN_PAST",
     "expire_time"),
    (order(expire_time=FUTURE), "EXPIRE_TIME_NOT_ALLOWED", "expire_time"),
    (order(time_in_force="DAY"), "NO_SESSION", "time_in_force"),
    (order(time_in_force="GTD", expire_time=-1), "OUT_OF_RANGE", "expire_time"),
]


@pytest.mark.parametrize(("body", "code", "field"), REFUSALS)
async def test_new_order_fields_are_checked_with_documented_codes(
        gateway: Gateway, body: dict[str, Any], code: str, field: str) -> None:
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, body)
    assert status == 400, reply
    assert (reply["error"]["code"], reply["error"]["field"]) == (code, field)
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice:
        with pytest.raises(ClientError) as refused:
            await alice.request({"op": "place", "order": body})
        assert (refused.value.code, refused.value.field) == (code, "order." + field)
    _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
    assert (book["bids"], book["asks"]) == ([], [])


async def test_stop_waits_triggers_and_reports(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice, \
            await LobgwClient.connect(gateway.ws_url, api_key=BOB_KEY) as bob:
        await alice.subscribe("executions")
        stop = await alice.place("BTC-USD", "BUY", "1", type="STOP", stop_price="101")
        assert stop.order.type.value == "STOP"
        assert (stop.order.status.value, stop.order.stop_price, stop.order.triggered) == (
            "NEW", "101.0", False)
        limit = await alice.place("BTC-USD", "BUY", "2", "99", type="STOP_LIMIT",
                                  stop_price="102", client_order_id="sl")
        # Waiting stops are not in the book.
        _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
        assert book["bids"] == []
        moved = await alice.amend(client_order_id="sl", stop_price="101.5", price="103")
        assert (moved.order.stop_price, moved.order.price) == ("101.5", "103.0")
        with pytest.raises(ClientError) as refused:
            await alice.amend(order_id=stop.order.order_id, price="100")
        assert (refused.value.code, refused.value.field) == ("PRICE_NOT_ALLOWED", "price")
        # Liquidity above, then a trade at 101.5 releases both stops (101 first).
        await bob.place("BTC-USD", "SELL", "5", "101.5")
        await bob.place("BTC-USD", "SELL", "1", "103")
        await alice.place("BTC-USD", "BUY", "1", "101.5")
        reports = [await alice.next_message("execution") for _ in range(9)]
        kinds = [(r.order.order_id, r.event.value) for r in reports]
        taker = kinds[3][0]
        s, sl = stop.order.order_id, limit.order.order_id
        assert kinds == [(s, "accepted"), (sl, "accepted"), (sl, "amended"),
                         (taker, "accepted"), (taker, "fill"), (s, "triggered"), (s, "fill"),
                         (sl, "triggered"), (sl, "fill")]
        _, got, _ = await gateway.call("GET", f"/api/v1/orders/{stop.order.order_id}",
                                            ALICE_KEY)
        assert (got["status"], got["triggered"], got["filled_quantity"]) == (
            "FILLED", True, "1.00")
        _, got, _ = await gateway.call("GET", f"/api/v1/orders/{limit.order.order_id}",
                                            ALICE_KEY)
        # 3 left at 101.5 after the taker and the stop: the stop-limit takes 2 of them.
        assert reports[-1].fill is not None and reports[-1].fill.price == "101.5"
        assert (got["status"], got["triggered"], got["type"]) == ("FILLED", True, "STOP_LIMIT")


async def test_stop_that_would_trigger_is_refused(gateway: Gateway) -> None:
    await gateway.call("POST", "/api/v1/orders", BOB_KEY, order("SELL", "1", "100"))
    await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("BUY", "1", "100"))
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                          order(type="STOP", price=None, stop_price="99"))
    assert (status, reply["error"]["code"], reply["order"]["status"]) == (
        422, "STOP_WOULD_TRIGGER", "REJECTED")


async def test_iceberg_shows_its_display_and_refreshes(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice:
        await alice.subscribe("executions")
        ice = await alice.place("BTC-USD", "SELL", "5", "100", display_quantity="2")
        assert (ice.order.display_quantity, ice.order.remaining_quantity) == ("2.00", "5.00")
        _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
        assert book["asks"] == [["100.0", "2.00"]]
        await gateway.call("POST", "/api/v1/orders", BOB_KEY, order("SELL", "1", "100"))
        _, ack, _ = await gateway.call("POST", "/api/v1/orders", BOB_KEY,
                                            order("BUY", "2.5", "100", stp="NONE"))
        assert [fill["quantity"] for fill in ack["fills"]] == ["2.00", "0.50"]
        reports = [await alice.next_message("execution") for _ in range(3)]
        assert [r.event.value for r in reports] == ["accepted", "fill", "refreshed"]
        assert reports[1].order.remaining_quantity == "3.00"
        _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
        # Bob's plain order kept its place ahead of the refreshed part: it filled first.
        assert book["asks"] == [["100.0", "2.50"]]
        _, got, _ = await gateway.call("GET", f"/api/v1/orders/{ice.order.order_id}",
                                            ALICE_KEY)
        assert (got["remaining_quantity"], got["status"]) == ("3.00", "PARTIALLY_FILLED")


async def test_gtd_and_day_orders_expire_on_the_actor_timer(
        gateways: Callable[..., Any]) -> None:
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    gateway: Gateway = await gateways(sessions=[
        {"symbol": "BTC-USD", "end": end.strftime("%H:%M:%S")}])
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice:
        await alice.subscribe("executions")
        gtd = await alice.place("BTC-USD", "BUY", "1", "90", time_in_force="GTD",
                                expire_time=time.time_ns() + 300_000_000)
        day = await alice.place("BTC-USD", "BUY", "1", "91", time_in_force="DAY")
        assert day.order.expire_time is not None
        assert abs(day.order.expire_time - end.replace(microsecond=0).timestamp() * 1e9) < 1e9
        reports = [await alice.next_message("execution", timeout=10) for _ in range(4)]
        expired = [(r.order.order_id, r.order.reason) for r in reports
                   if r.event.value == "expired"]
        assert expired == [(gtd.order.order_id, "GTD_EXPIRED"),
                           (day.order.order_id, "DAY_ENDED")]
    _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
    assert book["bids"] == []


async def test_batch_over_websocket_answers_each_item_in_order(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice:
        await alice.place("BTC-USD", "SELL", "1", "105", client_order_id="old")
        result = await alice.batch([
            {"op": "place", "id": "a", "order": order("BUY", "1", "100",
                                                      client_order_id="b1")},
            {"op": "place", "id": "b", "order": order("BUY", "1", "100.2")},
            {"op": "place", "id": "c", "order": {**order("BUY", "2", "10"),
                                                 "symbol": "ETH-USD"}},
            {"op": "amend", "id": "d", "client_order_id": "b1", "price": "101"},
            {"op": "cancel", "id": "e", "client_order_id": "old"},
            {"op": "cancel", "id": "f", "order_id": 999_999},
            {"op": "place", "id": "g", "order": order("BUY", "1", "104", post_only=True,
                                                      client_order_id="b1")},
        ])
        got = [(r.id, r.status, None if r.error is None else r.error.code,
                None if r.error is None else r.error.field) for r in result.results]
        assert got == [("a", 201, None, None), ("b", 400, "PRICE_OFF_TICK", "order.price"),
                       ("c", 201, None, None), ("d", 200, None, None),
                       ("e", 200, None, None), ("f", 404, "ORDER_NOT_FOUND", "order_id"),
                       ("g", 409, "DUPLICATE_CLIENT_ORDER_ID", "order.client_order_id")]
        amended = result.results[3].result
        assert amended is not None and amended.order.price == "101.0"
        canceled = result.results[4].result
        assert canceled is not None and canceled.order.status.value == "CANCELED"
        orders = {(o["symbol"], o["price"]) for o in (await gateway.call(
            "GET", "/api/v1/orders", ALICE_KEY))[1]}
        assert orders == {("BTC-USD", "101.0"), ("ETH-USD", "10.00")}
        with pytest.raises(ClientError) as refused:
            await alice.batch([{"op": "cancel", "order_id": 1}] * 51)
        assert (refused.value.code, refused.value.field) == ("BATCH_TOO_LARGE", "requests")
        with pytest.raises(ClientError) as refused:
            await alice.batch([{"op": "ping"}])
        assert refused.value.code == "INVALID_VALUE"
        with pytest.raises(ClientError) as refused:
            await alice.batch([])
        assert (refused.value.code, refused.value.field) == ("OUT_OF_RANGE", "requests")


async def test_batch_over_rest_is_one_journal_record_per_symbol(
        gateways: Callable[..., Any], tmp_path: Any) -> None:
    gateway: Gateway = await gateways(journal={"enabled": True, "directory": str(tmp_path),
                                               "fsync": "always"})
    status, reply, _ = await gateway.call("POST", "/api/v1/orders/batch", ALICE_KEY, {
        "requests": [{"op": "place", "order": order("BUY", "1", str(90 + i))}
                     for i in range(5)]
        + [{"op": "place", "order": order("SELL", "1", None, type="MARKET", stp="NONE")}]})
    assert status == 200
    assert [r["status"] for r in reply["results"]] == [201] * 6
    assert reply["results"][5]["result"]["order"]["status"] == "FILLED"
    status, reply, _ = await gateway.call("POST", "/api/v1/orders/batch", ALICE_KEY, {
        "requests": [{"op": "place", "order": order(price=None, type="STOP",
                                                    stop_price="80")}]})
    assert reply["results"][0]["status"] == 422
    assert reply["results"][0]["error"]["code"] == "STOP_WOULD_TRIGGER"
    assert reply["results"][0]["order"]["status"] == "REJECTED"
    status, reply, _ = await gateway.call("POST", "/api/v1/orders/batch", ALICE_KEY, {
        "requests": [{"op": "cancel", "order_id": 1}] * 51})
    assert (status, reply["error"]["code"]) == (400, "BATCH_TOO_LARGE")
    spec = gateway.app[EXCHANGE].spec("BTC-USD")
    _, _, batches = read_journal(tmp_path / "BTC-USD", spec)
    assert [len(batch) for batch in batches] == [6, 1]


async def engine_orders(gateway: Gateway, symbol: str = "BTC-USD"
                        ) -> tuple[int, dict[str, list[tuple[Decimal, list[tuple[int, Decimal]]]]]]:
    """The engine's visible orders by side and level (through the actor, between batches)
    and the last sequence number the `orders` channel published."""
    spec = gateway.app[EXCHANGE].spec(symbol)

    def read(book: Any) -> dict[str, list[tuple[Decimal, list[tuple[int, Decimal]]]]]:
        found = {}
        for side, levels in zip((Side.BUY, Side.SELL), book.depth(None), strict=True):
            found[side.value] = [(spec.ticks_to_price(price), [
                (view.order_id, spec.lots_to_quantity(view.remaining))
                for view in book.level_orders(side, price)]) for price, _ in levels]
        return found

    book = await gateway.app[EXCHANGE].actor(symbol).query(read)
    return gateway.app[HUB].feeds[symbol].l3.last_seq, book


async def caught_up(watcher: LobgwClient, seq: int, symbol: str = "BTC-USD") -> None:
    while (known := watcher.order_books.get(symbol)) is None or known.seq != seq:
        await watcher.next_message(timeout=5)


async def test_l3_channel_book_equals_the_engine_and_hides_what_is_hidden(
        gateways: Callable[..., Any]) -> None:
    gateway: Gateway = await gateways(market_data={"l3_accounts": ["alice"]})
    async with await LobgwClient.connect(gateway.ws_url, api_key=BOB_KEY) as bob:
        with pytest.raises(ClientError) as refused:
            await bob.subscribe("orders", "BTC-USD")
        assert (refused.value.code, refused.value.field) == ("FORBIDDEN", "channel")
    async with await LobgwClient.connect(gateway.ws_url) as anonymous:
        with pytest.raises(ClientError) as refused:
            await anonymous.subscribe("orders", "BTC-USD")
        assert refused.value.code == "UNAUTHORIZED"
    rng = random.Random(13)
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as watcher, \
            await LobgwClient.connect(gateway.ws_url, api_key=BOB_KEY) as trader:
        await trader.place("BTC-USD", "SELL", "5", "101", display_quantity="1")
        await trader.place("BTC-USD", "BUY", "1", "99")
        await watcher.subscribe("orders", "BTC-USD")
        snapshot = await watcher.next_message("orders_snapshot")
        assert [(o[1], o[2]) for o in snapshot.asks] == [("101.0", "1.00")]  # display only
        stop = await trader.place("BTC-USD", "BUY", "1", type="STOP", stop_price="150")
        live: list[int] = []
        for _ in range(8):
            acks = await asyncio.gather(*(trader.send_nowait({"op": "place", "order": {
                "symbol": "BTC-USD", "side": rng.choice(["BUY", "SELL"]),
                "quantity": str(rng.randint(1, 4)), "price": str(95 + rng.randint(0, 20) / 2),
                "stp": "NONE",
                **({"display_quantity": "1"} if rng.random() < 0.2 else {})}})
                for _ in range(20)))
            live += [ack.order.order_id for ack in acks if not ack.order.status.is_final]
            rng.shuffle(live)
            for order_id in live[:6]:
                with contextlib.suppress(ClientError):
                    if rng.random() < 0.5:
                        await trader.cancel(order_id=order_id)
                    else:
                        await trader.amend(order_id=order_id,
                                           quantity=str(rng.randint(1, 3)))
            await trader.place("BTC-USD", rng.choice(["BUY", "SELL"]), "2", type="MARKET",
                               stp="NONE")
            seq, book = await engine_orders(gateway)
            await caught_up(watcher, seq)
            local = watcher.order_books["BTC-USD"]
            assert local.levels("BUY") == book["BUY"]
            assert local.levels("SELL") == book["SELL"]
            assert local.updates > 0
        assert watcher.book_errors == []
        # No waiting stop and no hidden reserve is ever shown.
        assert stop.order.order_id not in local.where
        hidden = 0
        for side in ("BUY", "SELL"):
            for _, orders in local.levels(side):
                for order_id, visible in orders:
                    _, info, _ = await gateway.call("GET", f"/api/v1/orders/{order_id}",
                                                    BOB_KEY)
                    remaining = Decimal(info["remaining_quantity"])
                    if info["display_quantity"] is None:
                        assert visible == remaining
                    else:
                        assert visible <= Decimal(info["display_quantity"]) < remaining \
                            or visible == remaining
                        hidden += remaining > visible
        assert hidden  # icebergs with a reserve were in the book, and it was not shown
