"""History, idempotent retries and cancel-on-disconnect survive restarts (real processes).

What a client can ask about the past — an order by id or client order id, the public trades,
its own executions page by page — answers the same before and after a SIGTERM restart, a
`kill -9` restart, and a restart from a snapshot.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp

from lobgw.client import LobgwClient
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.test_durability import start, stop, write_config
from tests.test_serve import free_port

Answers = dict[str, Any]


async def call(session: aiohttp.ClientSession, method: str, url: str, key: str,
               body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, headers={"X-API-Key": key}, json=body) as reply:
        return reply.status, await reply.json()


def order(side: str, quantity: str, price: str, **extra: Any) -> dict[str, Any]:
    return {"symbol": "BTC-USD", "side": side, "quantity": quantity, "price": price, **extra}


async def trade_a_little(url: str) -> dict[str, int]:
    """A filled order, a partly filled one, a cancelled one, a rejected one."""
    ids: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        api = url + "/api/v1/orders"
        _, placed = await call(session, "POST", api, ALICE_KEY,
                               order("SELL", "2", "100", client_order_id="a-sell"))
        ids["partly"] = placed["order"]["order_id"]
        _, placed = await call(session, "POST", api, BOB_KEY,
                               order("BUY", "1.5", "100", client_order_id="b-buy"))
        ids["filled"] = placed["order"]["order_id"]
        _, placed = await call(session, "POST", api, BOB_KEY,
                               order("BUY", "1", "90", client_order_id="b-cancel"))
        ids["canceled"] = placed["order"]["order_id"]
        await call(session, "DELETE", f"{api}/{ids['canceled']}", BOB_KEY)
        status, refused = await call(session, "POST", api, BOB_KEY, order(
            "BUY", "1", "100", post_only=True, client_order_id="b-rejected"))
        assert status == 422
        ids["rejected"] = refused["order"]["order_id"]
    return ids


async def answers(url: str, ids: dict[str, int]) -> Answers:
    """Everything a client can ask about the past, as it answers now."""
    found: Answers = {}
    async with aiohttp.ClientSession() as session:
        for name, order_id in ids.items():
            key = ALICE_KEY if name == "partly" else BOB_KEY
            found[name] = await call(session, "GET", f"{url}/api/v1/orders/{order_id}", key)
        for client_id in ("a-sell", "b-buy", "b-cancel", "b-rejected"):
            key = ALICE_KEY if client_id.startswith("a-") else BOB_KEY
            found[client_id] = await call(
                session, "GET", f"{url}/api/v1/orders/by-client-id/{client_id}", key)
        found["trades"] = await call(session, "GET", f"{url}/api/v1/symbols/BTC-USD/trades",
                                     ALICE_KEY)
        for key in (ALICE_KEY, BOB_KEY):
            for events in ("fills", "all"):
                found[f"{key[:9]}-{events}"] = await call(
                    session, "GET", f"{url}/api/v1/fills?events={events}", key)
    return found


async def test_history_answers_the_same_after_sigterm_kill_9_and_a_snapshot(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, snapshot_every=4)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await start(config, port)
    ids = await trade_a_little(url)
    before = await answers(url, ids)
    assert before["filled"][1]["status"] == "FILLED"
    assert before["partly"][1]["status"] == "PARTIALLY_FILLED"
    assert before["canceled"][1]["status"] == "CANCELED"
    assert (before["rejected"][0], before["rejected"][1]["status"]) == (200, "REJECTED")
    assert len(before["trades"][1]["trades"]) == 1
    bob_fills = before["test-bob--fills"][1]["executions"]
    assert [(e["event"], e["fill"]["quantity"]) for e in bob_fills] == [("fill", "1.50")]
    assert {e["event"] for e in before["test-bob--all"][1]["executions"]} >= {
        "accepted", "fill", "canceled", "rejected"}
    for restart in ("SIGTERM", "kill -9", "SIGTERM after more snapshots"):
        if restart == "kill -9":
            process.kill()
            await process.wait()
        else:
            await stop(process)
        process = await start(config, port)
        assert await answers(url, ids) == before, restart
        if restart == "kill -9":  # more traffic, so snapshots cover the history
            async with aiohttp.ClientSession() as session:
                for price in range(50, 60):
                    await call(session, "POST", url + "/api/v1/orders", ALICE_KEY,
                               order("BUY", "0.01", str(price)))
            before = await answers(url, ids)
    snapshots = list((tmp_path / "data" / "BTC-USD").glob("snapshot-*.snap"))
    assert snapshots, "the history was restored from a snapshot at least once"
    await stop(process)


async def test_executions_page_through_a_cursor(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await start(config, port)
    async with aiohttp.ClientSession() as session:
        for price in ("100", "101", "102"):
            await call(session, "POST", url + "/api/v1/orders", ALICE_KEY,
                       order("SELL", "1", price))
        await call(session, "POST", url + "/api/v1/orders", BOB_KEY, order("BUY", "3", "102"))
        _, everything = await call(session, "GET", url + "/api/v1/fills?events=all", BOB_KEY)
        paged: list[Any] = []
        cursor = ""
        for _ in range(10):
            _, page = await call(session, "GET", url + "/api/v1/fills?events=all&limit=2"
                                 + (f"&after={cursor}" if cursor else ""), BOB_KEY)
            paged += page["executions"]
            cursor = page["next"]
            if not page["executions"]:
                break
        assert paged == everything["executions"] and len(paged) == 4  # accepted, 3 fills
        status, refused = await call(session, "GET", url + "/api/v1/fills?after=nonsense",
                                     BOB_KEY)
        assert (status, refused["error"]["field"]) == (400, "after")
    await stop(process)


async def test_a_resent_client_order_id_never_executes_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await start(config, port)
    async with aiohttp.ClientSession() as session:
        await call(session, "POST", url + "/api/v1/orders", ALICE_KEY, order("SELL", "5", "100"))
        status, first = await call(session, "POST", url + "/api/v1/orders", BOB_KEY,
                                   order("BUY", "1", "100", client_order_id="once"))
        assert (status, first["order"]["status"]) == (201, "FILLED")
    process.kill()  # the client never saw the answer: it will resend
    await process.wait()
    process = await start(config, port)
    async with aiohttp.ClientSession() as session:
        status, again = await call(session, "POST", url + "/api/v1/orders", BOB_KEY,
                                   order("BUY", "1", "100", client_order_id="once"))
        assert (status, again["error"]["code"]) == (409, "DUPLICATE_CLIENT_ORDER_ID")
        assert again["order"] == first["order"]
        _, fills = await call(session, "GET", url + "/api/v1/fills", BOB_KEY)
        assert len(fills["executions"]) == 1
    await stop(process)


async def test_cancel_on_disconnect_survives_kill_9_and_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for stopping in (signal.SIGKILL, signal.SIGTERM):
        process = await start(config, port)
        client = await LobgwClient.connect(f"ws://127.0.0.1:{port}/ws", api_key=ALICE_KEY,
                                           cancel_on_disconnect=True)
        guarded = [(await client.place("BTC-USD", "BUY", "1", price=str(price))).order.order_id
                   for price in (10, 11, 12)]
        async with aiohttp.ClientSession() as session:
            _, kept = await call(session, "POST", url + "/api/v1/orders", ALICE_KEY,
                                 order("BUY", "1", "13"))
        if stopping == signal.SIGKILL:
            process.kill()
            await process.wait()
        else:
            await stop(process)
        await asyncio.gather(client.close(), return_exceptions=True)
        process = await start(config, port)
        async with aiohttp.ClientSession() as session:
            for order_id in guarded:
                _, state = await call(session, "GET", f"{url}/api/v1/orders/{order_id}",
                                      ALICE_KEY)
                assert (state["status"], state["reason"]) == (
                    "CANCELED", "CANCEL_ON_DISCONNECT"), stopping
            _, still = await call(session, "GET", f"{url}/api/v1/orders/"
                                  f"{kept['order']['order_id']}", ALICE_KEY)
            assert still["status"] == "NEW"
            _, history = await call(session, "GET", url + "/api/v1/fills?events=all",
                                    ALICE_KEY)
            canceled = {e["order_id"] for e in history["executions"]
                        if e["event"] == "canceled" and e["reason"] == "CANCEL_ON_DISCONNECT"}
            assert set(guarded) <= canceled
            await call(session, "DELETE", url + "/api/v1/orders", ALICE_KEY)
        await stop(process)
