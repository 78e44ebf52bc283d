"""Liveness: a frozen peer is noticed by the server's pings, a dead-man's switch cancels
orders that are not refreshed, heartbeats reach every authenticated connection, and a
shutdown is announced before the close."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from lobgw.client import LobgwClient
from tests.conftest import ALICE_KEY, Gateway

FROZEN_CLIENT = """
import asyncio, sys
from lobgw.client import LobgwClient
async def main():
    client = await LobgwClient.connect(sys.argv[1], api_key=sys.argv[2],
                                       cancel_on_disconnect=True)
    ack = await client.place("BTC-USD", "BUY", "1", price="90")
    print(ack.order.order_id, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def order_state(gateway: Gateway, order_id: int) -> dict[str, Any]:
    _, order, _ = await gateway.call("GET", f"/api/v1/orders/{order_id}", ALICE_KEY)
    return dict(order)


async def test_a_frozen_peer_is_disconnected_by_ping_and_its_orders_cancelled(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(server={"ws_ping_seconds": 0.5})
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FROZEN_CLIENT, gateway.ws_url, ALICE_KEY,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert client.stdout is not None
        order_id = int(await asyncio.wait_for(client.stdout.readline(), 30))
        assert (await order_state(gateway, order_id))["status"] == "NEW"
        client.send_signal(signal.SIGSTOP)  # frozen: its TCP stack still answers, it does not
        async with asyncio.timeout(10):
            while (state := await order_state(gateway, order_id))["status"] == "NEW":
                await asyncio.sleep(0.05)
        assert (state["status"], state["reason"]) == ("CANCELED", "CANCEL_ON_DISCONNECT")
    finally:
        client.kill()
        client.send_signal(signal.SIGCONT)
        await client.wait()


async def test_cancel_after_fires_unless_refreshed_and_0_disarms(gateway: Gateway) -> None:
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice:
        first = await alice.place("BTC-USD", "BUY", "1", price="90")
        armed = await alice.request({"op": "cancel_after", "timeout_ms": 400})
        assert armed.trigger_time - armed.current_time == 400_000_000
        for _ in range(3):  # refreshed in time: nothing happens
            await asyncio.sleep(0.2)
            await alice.request({"op": "cancel_after", "timeout_ms": 400})
        assert (await order_state(gateway, first.order.order_id))["status"] == "NEW"
        await asyncio.sleep(0.6)  # not refreshed: every open order goes
        state = await order_state(gateway, first.order.order_id)
        assert (state["status"], state["reason"]) == ("CANCELED", "CANCEL_AFTER")
        # over REST, and disarmed with 0
        second = await alice.place("BTC-USD", "BUY", "1", price="91")
        status, result, _ = await gateway.call("POST", "/api/v1/cancel-after", ALICE_KEY,
                                               {"timeout_ms": 300})
        assert status == 200 and result["trigger_time"] is not None
        status, result, _ = await gateway.call("POST", "/api/v1/cancel-after", ALICE_KEY,
                                               {"timeout_ms": 0})
        assert (status, result["trigger_time"]) == (200, None)
        await asyncio.sleep(0.5)
        assert (await order_state(gateway, second.order.order_id))["status"] == "NEW"


async def test_every_authenticated_connection_gets_heartbeats(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(runtime={"heartbeat_seconds": 0.3})
    async with await LobgwClient.connect(gateway.ws_url, api_key=ALICE_KEY) as alice:
        heartbeat = await alice.next_message("heartbeat", timeout=5)  # no subscription at all
        assert heartbeat.time > 0
