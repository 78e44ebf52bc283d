"""Rate limits that stop the abuser and nobody else: per account once authenticated, per
client address before, the address taken from X-Forwarded-For only from trusted proxies,
and a WebSocket that keeps flooding is closed even though some messages get through."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import websockets

from tests.conftest import ALICE_KEY, BOB_KEY

ORDER = {"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "50"}


async def test_an_honest_key_is_unaffected_by_another_keys_burst_from_the_same_address(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_ip_rate": 5, "per_ip_burst": 5,
                                          "per_key_rate": 10, "per_key_burst": 10})
    burst = await asyncio.gather(*(gateway.call("POST", "/api/v1/orders", BOB_KEY, ORDER)
                                   for _ in range(40)))
    assert sum(status == 429 for status, _, _ in burst) >= 25  # bob is limited per key
    honest = []
    for _ in range(5):
        honest.append((await gateway.call("POST", "/api/v1/orders", ALICE_KEY, ORDER))[0])
        await asyncio.sleep(0.2)
    assert honest == [201] * 5
    # unauthenticated requests are still limited per address
    anonymous = [status for status, _, _ in await asyncio.gather(
        *(gateway.call("GET", "/api/v1/symbols") for _ in range(20)))]
    assert 429 in anonymous


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_ip_rate": 1, "per_ip_burst": 2},
                             server={"trusted_proxies": ["127.0.0.1"]})
    for client in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # three clients behind the proxy
        for _ in range(2):
            status, _, _ = await gateway.call("GET", "/api/v1/symbols", headers={
                "X-Forwarded-For": f"{client}, 127.0.0.1"})
            assert status == 200, client
    status, _, _ = await gateway.call("GET", "/api/v1/symbols",
                                      headers={"X-Forwarded-For": "10.0.0.1"})
    assert status == 429  # 10.0.0.1 used its burst


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_ip_rate": 1, "per_ip_burst": 2})
    statuses = [(await gateway.call("GET", "/api/v1/symbols",
                                    headers={"X-Forwarded-For": f"10.0.0.{i}"}))[0]
                for i in range(4)]
    assert 429 in statuses  # a forged header does not buy a fresh bucket


async def test_a_sustained_websocket_flood_is_closed_with_1008(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_key_rate": 50, "per_key_burst": 10,
                                          "ws_violations_before_close": 20,
                                          "ws_violation_window_seconds": 5})
    async with websockets.connect(gateway.ws_url) as raw:
        await raw.send(msgspec.json.encode({"op": "auth", "id": 0,
                                            "api_key": ALICE_KEY}).decode())
        await raw.recv()
        retry_after_ms = None
        with_replies = 0
        async with asyncio.timeout(20):
            try:
                for request_id in range(1, 2000):  # about 4x the limit, for seconds
                    await raw.send(f'{{"op":"ping","id":{request_id}}}')
                    await asyncio.sleep(1 / 200)
                    while True:
                        try:
                            reply = msgspec.json.decode(await asyncio.wait_for(raw.recv(),
                                                                               0.001))
                        except TimeoutError:
                            break
                        with_replies += 1
                        if reply["type"] == "error":
                            assert reply["error"]["code"] == "RATE_LIMITED"
                            retry_after_ms = reply["error"]["retry_after_ms"]
            except websockets.ConnectionClosed:
                pass
        assert raw.close_code == 1008
        assert retry_after_ms is not None and retry_after_ms >= 1
        assert with_replies > 20  # some got through: a reset-on-success rule never closes
