"""What the benchmark scripts share: a free port, and `lobgw serve` started and stopped."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp


def unlimited_server_toml(port: int) -> str:
    """The `[server]` and `[rate_limits]` sections of a benchmark's config: loopback on
    `port`, and no limit the load could hit (rates, connections from one address)."""
    return f"""[server]
host = "127.0.0.1"
port = {port}
max_connections_per_ip = 100000

[rate_limits]
per_key_rate = 10000000
per_key_burst = 10000000
per_ip_rate = 10000000
per_ip_burst = 10000000
"""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_server(config: Path, port: int, timeout: float = 60.0
                       ) -> asyncio.subprocess.Process:
    """Start `lobgw serve` in its own process and wait until `/ready` answers 200."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lobgw", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


async def stop_server(process: asyncio.subprocess.Process) -> None:
    """SIGTERM and wait for a clean exit."""
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 120)
