"""Connections cannot be held open for free: partial headers, silent TCP connections,
unsent bodies and silent WebSockets are cut after their deadlines, and one address can open
only so many connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from lobgw.gateway.keys import GUARD
from tests.conftest import ALICE_KEY

DEADLINES = {"header_timeout_seconds": 0.5, "keepalive_seconds": 0.5,
             "body_timeout_seconds": 0.5, "ws_auth_timeout_seconds": 0.5,
             "max_connections_per_ip": 40}


async def opened(gateway: Any, payload: bytes) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    if payload:
        writer.write(payload)
        await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent before it closed the connection."""
    async with asyncio.timeout(within):
        return await reader.read()


async def test_half_open_and_silent_connections_are_cut(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(server=DEADLINES)
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
               b"\r\n\r\n")
    body = (b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nX-API-Key: " + ALICE_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    kinds = {"partial headers": b"GET /health HTTP/1.1\r\nHost: x\r\n",
             "silent TCP": b"", "unsent body": body, "silent WebSocket": upgrade}
    connections = {kind: [await opened(gateway, payload) for _ in range(5)]
                   for kind, payload in kinds.items()}
    for kind, pairs in connections.items():
        for reader, writer in pairs:
            sent = await closed_by_server(reader, 10)
            if kind == "unsent body":
                assert sent.startswith(b"HTTP/1.1 408"), sent[:40]
                assert b"REQUEST_TIMEOUT" in sent
            if kind == "silent WebSocket":
                assert sent.startswith(b"HTTP/1.1 101")
            writer.close()
    assert gateway.app[GUARD].timed_out >= 10  # partial headers and silent TCP


async def test_one_address_can_open_only_so_many_connections(
        gateways: Callable[..., Any]) -> None:
    gateway = await gateways(server={**DEADLINES, "header_timeout_seconds": 30,
                                     "max_connections_per_ip": 10})
    held = [await opened(gateway, b"") for _ in range(10)]
    extra = await opened(gateway, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await closed_by_server(extra[0], 5) == b""  # refused without an answer
    extra[1].close()
    assert gateway.app[GUARD].refused == 1
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.2)
    again = await opened(gateway, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await closed_by_server(again[0], 5)).startswith(b"HTTP/1.1 200")
    again[1].close()
