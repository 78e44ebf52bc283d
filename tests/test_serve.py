"""`lobgw serve` as a real subprocess: startup, config errors, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from lobgw.client import ClientClosedError, Disconnected, LobgwClient
from lobgw.config import load_config
from lobgw.errors import ConfigError
from tests.conftest import ACCOUNTS_TOML, ALICE_KEY, BOB_KEY, spawn_server

CONFIG = f"""
[[symbols]]
symbol = "BTC-USD"
tick_size = "0.5"
lot_size = "0.01"

{ACCOUNTS_TOML}
[server]
host = "127.0.0.1"
port = 8080

[journal]
directory = "JOURNAL_DIR"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_server(config: Path, port: int, *extra: str,
                       env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await spawn_server(config, "--port", str(port), *extra, env=env)


async def wait_ready(port: int, timeout: float = 20) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("server did not become ready")
            await asyncio.sleep(0.05)


async def test_sigterm_closes_websockets_with_1001_drains_and_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("JOURNAL_DIR", str(tmp_path / "data")))
    port = free_port()
    process = await start_server(config, port)
    try:
        await wait_ready(port)
        client = await LobgwClient.connect(f"ws://127.0.0.1:{port}/ws", api_key=ALICE_KEY)
        ack = await client.place("BTC-USD", "BUY", "1", price="100")
        assert ack.order.status.value == "NEW"
        await client.subscribe("trades", "BTC-USD")
        process.send_signal(signal.SIGTERM)
        pushed = []
        async with asyncio.timeout(15):
            async for message in client.market_data():
                pushed.append(type(message).__name__)
                if isinstance(message, Disconnected):
                    assert message.code == 1001
                    break
        assert pushed[-2:] == ["ShutdownMessage", "Disconnected"]  # announced before 1001
        assert client.close_code == 1001
        await client.close()  # it would reconnect once the gateway is back
        with pytest.raises(ClientClosedError):
            await client.ping()
        returncode = await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert returncode == 0, log
    assert "shutting down" in log and "actors drained" in log
    assert "Traceback" not in log
    assert ALICE_KEY not in log


async def test_bad_config_stops_startup_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace('tick_size = "0.5"', 'tick_size = "-1"')
                      .replace("JOURNAL_DIR", str(tmp_path / "data")))
    process = await start_server(config, free_port())
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"symbols.0" in stderr and b"tick_size must be a positive decimal" in stderr
    assert b"Traceback" not in stderr


async def test_environment_override_of_the_port(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("JOURNAL_DIR", str(tmp_path / "data")))
    port = free_port()
    process = await spawn_server(config, env={"LOBGW_SERVER__PORT": str(port)})
    try:
        await wait_ready(port)
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 15)
    assert process.returncode == 0


def test_load_config_overrides_and_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("JOURNAL_DIR", str(tmp_path / "data")))
    loaded = load_config(config, {"LOBGW_SERVER__PORT": "9100",
                                  "LOBGW_SYMBOLS__0__MAX_QUANTITY": "50",
                                  "LOBGW_CORS__ALLOW_ORIGINS": "https://a.example, https://b",
                                  "LOBGW_RUNTIME__BATCH_SIZE": "64"})
    assert loaded.server.port == 9100
    assert str(loaded.symbols[0].max_quantity) == "50"
    assert loaded.cors.allow_origins == ["https://a.example", "https://b"]
    assert loaded.runtime.batch_size == 64
    with pytest.raises(ConfigError, match=r"server\.port: .* \(from environment variable "
                                          r"LOBGW_SERVER__PORT\)"):
        load_config(config, {"LOBGW_SERVER__PORT": "not-a-number"})
    with pytest.raises(ConfigError, match=r"runtime\.batch_size"):
        load_config(config, {"LOBGW_RUNTIME__BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match="unknown field `colour`"):
        load_config(config, {"LOBGW_SERVER__COLOUR": "blue"})
    with pytest.raises(ConfigError, match="LOBGW_SYMBOLS__5__TICK_SIZE"):
        load_config(config, {"LOBGW_SYMBOLS__5__TICK_SIZE": "1"})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml", {})
    (tmp_path / "broken.toml").write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "broken.toml", {})
    duplicate = (CONFIG.replace("JOURNAL_DIR", "x")
                 + f'\n[[accounts]]\nname = "carol"\napi_key = "{ALICE_KEY}"\n')
    (tmp_path / "dup.toml").write_text(duplicate)
    with pytest.raises(ConfigError, match="reuses another account's api_key") as caught:
        load_config(tmp_path / "dup.toml", {})
    assert ALICE_KEY not in str(caught.value)


def test_shipped_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config.toml", {})
    assert [s.symbol for s in config.symbols] == ["BTC-USD", "ETH-USD", "AMZN"]
    assert config.accounts


async def test_logs_cannot_be_forged_flooded_or_leak_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("JOURNAL_DIR", str(tmp_path / "data")))
    port = free_port()
    process = await start_server(config, port)
    await wait_ready(port)
    requests = [
        b"GET /orders%0A2026-12-02%2000:00:00,000%20ERROR%20lobgw.forged:%20pwned HTTP/1.1"
        b"\r\nHost: x\r\n\r\n",
        b"GET /%1B[31mred HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + b"k" * 9000 + b" HTTP/1.1\r\nX-API-Key: " + ALICE_KEY.encode() + b"\r\n\r\n",
        b"GET /api/v1/symbols?api_key=" + BOB_KEY.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"X-API-Key: " + b"z" * 9000 + b"\r\n\r\n",
    ] + [b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n"] * 300  # each one logged by aiohttp
    for payload in requests:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        await reader.read(200)
        writer.close()
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    log = stderr.decode()
    lines = log.splitlines()
    assert not any(line.startswith("2026-12-02 00:00:00,000") for line in lines)  # no forgery
    forged = [line for line in lines if "lobgw.forged" in line]
    assert len(forged) == 1 and "/orders\\n2026-12-02" in forged[0]  # escaped, in its line
    assert "\x1b" not in log and "/\\x1b[31mred" in log
    assert ALICE_KEY not in log and BOB_KEY not in log
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:1500]
    assert not any(" ERROR " in line for line in lines if line not in forged)
    assert 5 <= log.count("unparseable request") <= 25, log.count("unparseable request")
