"""Shared fixtures: a real gateway on a free local port, and helpers to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from lobgw.config import Config
from lobgw.gateway.app import create_app
from lobgw.gateway.connections import GuardedSite
from lobgw.gateway.keys import GUARD, STATE
from lobgw.gateway.server import listen

ALICE_KEY = "test-alice-key-000000000000000001"
BOB_KEY = "test-bob-key-0000000000000000000002"
ACCOUNTS_TOML = f"""
[[accounts]]
name = "alice"
api_key = "{ALICE_KEY}"

[[accounts]]
name = "bob"
api_key = "{BOB_KEY}"
"""
"""The two test accounts, for config files that tests write."""

_SPAWNED: list[asyncio.subprocess.Process] = []


def reap_later(process: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    """Register a server subprocess to be killed after the test if the test did not stop it
    (a failed assertion must not leave a gateway running)."""
    _SPAWNED.append(process)
    return process


async def spawn_server(config: Path, *args: str, env: dict[str, str] | None = None,
                       preexec: Callable[[], None] | None = None
                       ) -> asyncio.subprocess.Process:
    """`python -m lobgw serve --config CONFIG ARGS` in a real subprocess (stderr piped for
    the test to read), killed after the test if it is still running."""
    return reap_later(await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lobgw", "serve", "--config", str(config), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, preexec_fn=preexec))


@pytest.fixture(autouse=True)
def _reap_servers() -> Iterator[None]:
    yield
    while _SPAWNED:
        process = _SPAWNED.pop()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def make_config(**overrides: Any) -> Config:
    """A test config: two symbols, two accounts, generous limits unless overridden."""
    data: dict[str, Any] = {
        "symbols": [
            {"symbol": "BTC-USD", "tick_size": "0.5", "lot_size": "0.01",
             "max_quantity": "1000"},
            {"symbol": "ETH-USD", "tick_size": "0.01", "lot_size": "0.1",
             "price_band_low": "1", "price_band_high": "10000"},
        ],
        "accounts": [{"name": "alice", "api_key": ALICE_KEY},
                     {"name": "bob", "api_key": BOB_KEY}],
        "server": {"host": "127.0.0.1", "port": 0},
        "rate_limits": {"per_key_rate": 100000, "per_key_burst": 100000,
                        "per_ip_rate": 100000, "per_ip_burst": 100000},
        "runtime": {"heartbeat_seconds": 30},
        "logging": {"access_log": False},
        "journal": {"enabled": False},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return msgspec.convert(data, Config)


@dataclass
class Gateway:
    """A running gateway and clients for it."""

    app: web.Application
    url: str
    session: aiohttp.ClientSession

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"

    async def call(self, method: str, path: str, key: str | None = None,
                   json: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        """Make a request; return (status, decoded JSON body, headers)."""
        headers = {"X-API-Key": key} if key else {}
        headers.update(kwargs.pop("headers", {}))
        async with self.session.request(method, self.url + path, headers=headers,
                                        json=json, **kwargs) as response:
            text = await response.read()
            body = msgspec.json.decode(text) if text and response.content_type == \
                "application/json" else text.decode()
            return response.status, body, response.headers


async def start_gateway(config: Config) -> tuple[web.AppRunner, str]:
    """Start a gateway for `config` on a free port; return its runner and base URL."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None,
                           keepalive_timeout=config.server.keepalive_seconds)
    await runner.setup()
    site = GuardedSite(runner, listen("127.0.0.1", 0), app[GUARD])
    await site.start()
    recovery = app[STATE].recovery
    if recovery is not None:
        await recovery
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
def gateway_factory() -> Callable[..., Any]:
    """Build gateways with config overrides; all are shut down after the test."""
    started: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def factory(**overrides: Any) -> Gateway:
        runner, url = await start_gateway(make_config(**overrides))
        session = aiohttp.ClientSession()
        started.append((runner, session))
        return Gateway(runner.app, url, session)

    factory.started = started  # type: ignore[attr-defined]
    return factory


@pytest.fixture
async def gateway(gateway_factory: Callable[..., Any]) -> AsyncIterator[Gateway]:
    gw: Gateway = await gateway_factory()
    yield gw
    for runner, session in gateway_factory.started:  # type: ignore[attr-defined]
        await session.close()
        await runner.cleanup()


@pytest.fixture
async def gateways(gateway_factory: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """Like `gateway`, for tests that need their own config."""
    yield gateway_factory
    for runner, session in gateway_factory.started:  # type: ignore[attr-defined]
        await session.close()
        await runner.cleanup()


async def stalled_reader(gateway: Gateway) -> Any:
    """A raw WebSocket client, subscribed to BTC-USD's book at depth 1000, that stops
    reading: a small receive buffer, and its transport paused (a real slow consumer)."""
    import socket

    import websockets

    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    stalled = await websockets.connect(gateway.ws_url, sock=sock, max_queue=1)
    await stalled.send('{"op":"subscribe","id":1,"channel":"book","symbol":"BTC-USD",'
                       '"depth":1000}')
    await stalled.recv()  # subscribed
    stalled.transport.pause_reading()
    return stalled


async def churn(client: Any, orders: int = 2000, rounds: int = 5, window: int = 100) -> None:
    """Book updates for every subscriber: `rounds` times, `orders` orders at distinct
    prices, then their cancels, pipelined `window` at a time (so the churning client itself
    never falls far behind)."""
    for _ in range(rounds):
        for start in range(0, orders, window):
            placed = await asyncio.gather(*(client.send_nowait({"op": "place", "order": {
                "symbol": "BTC-USD", "side": "BUY", "quantity": "0.01",
                "price": str(10 + i / 2)}}) for i in range(start, start + window)))
            await asyncio.gather(*(client.send_nowait(
                {"op": "cancel", "order_id": ack.order.order_id}) for ack in placed))
