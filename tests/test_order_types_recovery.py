"""`kill -9` with books holding every order type: waiting stops, a triggered stop-limit
resting, an iceberg with a reserve after refreshes, GTD and DAY orders. The restarted gateway
(from the journal alone, or from a snapshot and its tail) has the identical book and
produces the identical future events: those of an engine that replays the whole journal
without ever crashing."""

from __future__ import annotations

import datetime
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp

from lobgw.actors.journal import read_journal
from lobgw.book import Engine
from lobgw.book.events import Event
from lobgw.book.views import BookSnapshot
from lobgw.client import LobgwClient
from lobgw.orders import ExecutionKind, Fill, OrderState, OrderTracker
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.test_durability import SPEC, start, stop
from tests.test_durability import write_config as durability_config
from tests.test_serve import free_port

CAROL_KEY = "test-carol-key-00000000000000000003"
KEYS = (ALICE_KEY, BOB_KEY, CAROL_KEY)


def write_config(tmp_path: Path, snapshot_every: int) -> Path:
    path = durability_config(tmp_path, snapshot_every)
    ended = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    path.write_text(path.read_text() + f"""
[[accounts]]
name = "carol"
api_key = "{CAROL_KEY}"

[[sessions]]
symbol = "BTC-USD"
end = "{ended:%H:%M}"
""")
    return path


def place(side: str, quantity: str, price: str | None = None, **extra: Any
          ) -> dict[str, Any]:
    order = {"symbol": "BTC-USD", "side": side, "quantity": quantity, **extra}
    if price is not None:
        order["price"] = price
    return order


FAR = int(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC).timestamp()) * 10**9

BUILD = [  # (account, order): a book with every type in it
    (ALICE_KEY, place("SELL", "5", "110", display_quantity="1")),
    (BOB_KEY, place("BUY", "1", "100", type="STOP_LIMIT", stop_price="110")),
    (ALICE_KEY, place("BUY", "1", type="STOP", stop_price="120")),
    (BOB_KEY, place("SELL", "2", "95", type="STOP_LIMIT", stop_price="100")),
    (ALICE_KEY, place("BUY", "1", "90", time_in_force="GTD", expire_time=FAR,
                      client_order_id="gtd")),
    (BOB_KEY, place("BUY", "1", "91", time_in_force="DAY", client_order_id="day")),
    (BOB_KEY, place("BUY", "1.5", "110")),  # refreshes the iceberg, releases bob's stop
]
FUTURE = [  # sweeps the iceberg, trades through both remaining stops
    (CAROL_KEY, place("SELL", "2", "120")),
    (BOB_KEY, place("BUY", "4", "120")),
    (CAROL_KEY, place("SELL", "3", "99")),
]


def replayed(copy: Path) -> tuple[Engine, list[list[Event]]]:
    """A fresh engine after the journal in `copy`, and each record's events."""
    snapshot, _, batches = read_journal(copy / "BTC-USD", SPEC)
    engine = Engine(SPEC) if snapshot is None else Engine.restore(snapshot)
    return engine, [engine.apply_batch(batch) for batch in batches]


def expected_orders(snapshot: BookSnapshot) -> dict[int, tuple[Any, ...]]:
    """What `GET /api/v1/orders` must say of each live order of a book."""
    found: dict[int, tuple[Any, ...]] = {}
    for view in snapshot.bids + snapshot.asks:
        found[view.order_id] = (
            view.side.value, SPEC.format_price(view.price), None,
            SPEC.format_quantity(view.remaining + view.hidden),
            None if view.display_quantity is None
            else SPEC.format_quantity(view.display_quantity), view.expire_time)
    for waiting in snapshot.stops:
        found[waiting.order_id] = (
            waiting.side.value,
            None if waiting.price is None else SPEC.format_price(waiting.price),
            None if waiting.stop_price is None else SPEC.format_price(waiting.stop_price),
            SPEC.format_quantity(waiting.quantity), None, waiting.expire_time)
    return found


async def served_orders(url: str) -> dict[int, tuple[Any, ...]]:
    """The gateway's open orders as `expected_orders` puts them (a triggered stop is in the
    book: its stop price is history, checked on its own)."""
    found: dict[int, tuple[Any, ...]] = {}
    async with aiohttp.ClientSession() as session:
        for key in KEYS:
            async with session.get(url + "/api/v1/orders", headers={"X-API-Key": key}) as reply:
                for o in await reply.json():
                    found[o["order_id"]] = (o["side"], o["price"],
                                            None if o["triggered"] else o["stop_price"],
                                            o["remaining_quantity"], o["display_quantity"],
                                            o["expire_time"])
            async with session.get(url + "/api/v1/orders/2", headers={"X-API-Key": BOB_KEY}
                                   ) as reply:
                triggered = await reply.json()  # BUILD's second order, released by a trade
            assert (triggered["type"], triggered["triggered"], triggered["stop_price"]) == (
                "STOP_LIMIT", True, "110.0")
    return found


def reports_of(events: list[Event], after: int) -> list[tuple[int, str, int, str]]:
    """(seq, event, order id, status) of every execution report these events make, of
    the events numbered above `after` (those before it only open the orders)."""
    tracker = OrderTracker()
    made: list[tuple[int, str, int, str]] = []

    def observe(kind: ExecutionKind, order: OrderState, event: Event, fill: Fill | None
                ) -> None:
        if event.seq > after:
            made.append((event.seq, kind.value, order.order_id, order.status.value))

    tracker.apply("BTC-USD", events, observe)
    return made


async def send(url: str, orders: list[tuple[str, dict[str, Any]]]) -> None:
    clients = {key: await LobgwClient.connect(url, api_key=key) for key in KEYS}
    try:
        for key, order in orders:
            await clients[key].request({"op": "place", "order": order})
    finally:
        for client in clients.values():
            await client.close()


async def test_kill_9_keeps_every_order_type_and_the_future_events(tmp_path: Path) -> None:
    for round_number, snapshot_every in enumerate((1_000_000, 3)):
        data = tmp_path / "data"
        shutil.rmtree(data, ignore_errors=True)
        config = write_config(tmp_path, snapshot_every)
        port = free_port()
        url, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        process = await start(config, port)
        await send(ws, BUILD)
        process.kill()
        await process.wait()
        copy = tmp_path / f"built{round_number}"
        shutil.copytree(data, copy)
        built, _ = replayed(copy)
        book = built.snapshot()
        assert len(book.stops) == 2 and any(v.hidden for v in book.asks)
        assert any(v.expire_time for v in book.bids)

        process = await start(config, port)
        assert await served_orders(url) == expected_orders(book)
        async with aiohttp.ClientSession() as session, \
                session.get(url + "/api/v1/symbols/BTC-USD/book?depth=50") as reply:
            depth = await reply.json()
        bids, asks = built.depth()
        assert depth["bids"] == [[SPEC.format_price(p), SPEC.format_quantity(q)]
                                 for p, q in bids]
        assert depth["asks"] == [[SPEC.format_price(p), SPEC.format_quantity(q)]
                                 for p, q in asks]
        watchers = [await LobgwClient.connect(ws, api_key=key) for key in KEYS]
        for watcher in watchers:
            await watcher.subscribe("executions")
        await send(ws, FUTURE)
        live: list[tuple[int, str, int, str]] = []
        for watcher in watchers:
            await watcher.ping()  # every report of the future orders was queued before
            while True:
                try:
                    message = await watcher.next_message("execution", timeout=0.5)
                except TimeoutError:
                    break
                live.append((message.seq, message.event.value, message.order.order_id,
                             message.order.status.value))
            await watcher.close()
        process.kill()
        await process.wait()
        after = tmp_path / f"after{round_number}"
        shutil.copytree(data, after)
        if round_number == 0:  # the whole history is journaled: replay it all, uncrashed
            final, records = replayed(after)
            expected = reports_of([event for record in records for event in record],
                                  book.seq)
            assert sorted(live) == sorted(expected)
            kinds = {kind for _, kind, _, _ in expected}
            assert {"triggered", "refreshed", "fill"} <= kinds
        else:
            final, _ = replayed(after)
        process = await start(config, port)
        assert await served_orders(url) == expected_orders(final.snapshot())
        stderr = await stop(process, signal.SIGTERM)
        assert "Traceback" not in stderr
