"""Gateway throughput and latency over real WebSockets, server and load in separate processes.

Workloads (the server is `lobgw serve` in its own process on uvloop; the load runs in this
process with the `websockets` client):

  entry    8 connections, each keeping `--window` orders in flight and sending the next as an
           ack returns: alternately a limit order near the mid and a cancel of one of its own
           resting orders. Prints orders/s acknowledged and ack latency p50 / p99 / p99.9.
  paced    the same connections at a fixed rate (default: half of what `entry` reached), one
           request at a time per tick: the latency a client sees when the gateway is not
           saturated.
  journal  with --journal: saturated order entry without and with the journal (fsync per
           batch), in alternating short runs; the medians and their ratio.
  fanout   `--subscribers` connections subscribed to one symbol's `book` and `trades` while 2
           connections trade on it; prints market-data messages delivered/s, and whether the
           server dropped any or closed slow consumers.

    python benchmarks/gateway.py [--seconds S] [--window W] [--subscribers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec
import websockets
from serving import free_port, start_server, stop_server, unlimited_server_toml

KEYS = [f"bench-key-{i:04d}-0000000000000000" for i in range(16)]


class Reply(msgspec.Struct):
    """The fields of a reply the load generator needs."""

    type: str
    id: int | str | None = None
    result: dict[str, object] | None = None


decode_reply = msgspec.json.Decoder(Reply).decode


def write_config(directory: Path, port: int, journal: bool = False) -> Path:
    """A config with one symbol, 16 accounts and no practical rate limits; journaled (fsync
    per batch, in `directory`) when `journal`."""
    accounts = "\n".join(f'[[accounts]]\nname = "trader{i}"\napi_key = "{key}"\n'
                         for i, key in enumerate(KEYS))
    path = directory / "bench.toml"
    path.write_text(f"""
[[symbols]]
symbol = "BENCH"
tick_size = "0.01"
lot_size = "1"

{accounts}
{unlimited_server_toml(port)}
[runtime]
slow_consumer_bytes = 67108864

[journal]
enabled = {"true" if journal else "false"}
directory = "{directory / "journal"}"
fsync = "batch"

[logging]
access_log = false
level = "WARNING"
""")
    return path





class Trader:
    """One order-entry connection: places limit orders and cancels its own resting ones."""

    def __init__(self, url: str, key: str, seed: int) -> None:
        self.url = url
        self.key = key
        self.rng = random.Random(seed)
        self.resting: list[int] = []
        self.latencies: list[float] = []
        self.sent_at: dict[int, float] = {}
        self.next_id = 1
        self.acked = 0
        self.errors = 0

    async def connect(self) -> None:
        """Open and authenticate."""
        self.ws = await websockets.connect(self.url, compression=None, max_size=2**22)
        await self.ws.send(msgspec.json.encode({"op": "auth", "id": 0, "api_key": self.key}
                                               ).decode())
        assert decode_reply(await self.ws.recv()).type == "ack"

    def request(self) -> str:
        """The next request: a cancel of a resting order half the time, else a new order."""
        request_id = self.next_id
        self.next_id += 1
        self.sent_at[request_id] = time.perf_counter()
        if self.resting and self.rng.random() < 0.5:
            order_id = self.resting.pop(self.rng.randrange(len(self.resting)))
            return f'{{"op":"cancel","id":{request_id},"order_id":{order_id}}}'
        side = "BUY" if self.rng.random() < 0.5 else "SELL"
        offset = self.rng.randint(1, 50) * (-1 if side == "BUY" else 1)
        if self.rng.random() < 0.05:
            offset = -offset  # occasionally marketable
        price = f"{100 + offset / 100:.2f}"
        return (f'{{"op":"place","id":{request_id},"order":{{"symbol":"BENCH","side":"{side}",'
                f'"quantity":"{self.rng.randint(1, 10)}","price":"{price}"}}}}')

    def received(self, raw: str | bytes) -> bool:
        """Account for one message; return True if it was a reply to one of ours."""
        reply = decode_reply(raw)
        if not isinstance(reply.id, int) or reply.id not in self.sent_at:
            return False
        self.latencies.append(time.perf_counter() - self.sent_at.pop(reply.id))
        self.acked += 1
        if reply.type == "error":
            self.errors += 1
        elif reply.result is not None:
            order = reply.result.get("order")
            if isinstance(order, dict) and order.get("status") in ("NEW", "PARTIALLY_FILLED"):
                order_id = order["order_id"]
                if isinstance(order_id, int) and order.get("remaining_quantity") != "0":
                    self.resting.append(order_id)
        return True

    async def run_window(self, window: int, until: float) -> None:
        """Keep `window` requests in flight until `until`."""
        for _ in range(window):
            await self.ws.send(self.request())
        while time.perf_counter() < until:
            if self.received(await self.ws.recv()):
                await self.ws.send(self.request())
        while self.sent_at:
            self.received(await self.ws.recv())

    async def run_paced(self, rate: float, until: float) -> None:
        """Send at a steady `rate` per second, reading replies as they come."""
        reader = asyncio.create_task(self._read_forever())
        interval = 1.0 / rate
        next_send = time.perf_counter()
        while next_send < until:
            await self.ws.send(self.request())
            next_send += interval
            delay = next_send - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        deadline = time.perf_counter() + 10
        while self.sent_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        reader.cancel()

    async def _read_forever(self) -> None:
        async for raw in self.ws:
            self.received(raw)


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_line(traders: list[Trader], seconds: float, label: str) -> float:
    """Print throughput and latency percentiles; return orders/s."""
    latencies = [x for trader in traders for x in trader.latencies]
    acked = sum(trader.acked for trader in traders)
    errors = sum(trader.errors for trader in traders)
    rate = acked / seconds
    print(f"{label:<28} {rate:>10,.0f}/s  p50 {percentile(latencies, .5) * 1e3:6.2f} ms  "
          f"p99 {percentile(latencies, .99) * 1e3:6.2f} ms  "
          f"p99.9 {percentile(latencies, .999) * 1e3:6.2f} ms  "
          f"({acked:,} acks, {errors:,} refused)")
    return rate


async def entry(url: str, seconds: float, window: int, connections: int,
                label: str = "") -> float:
    """Saturated order entry."""
    traders = [Trader(url, KEYS[i], i) for i in range(connections)]
    await asyncio.gather(*(t.connect() for t in traders))
    start = time.perf_counter()
    await asyncio.gather(*(t.run_window(window, start + seconds) for t in traders))
    elapsed = time.perf_counter() - start
    rate = latency_line(traders, elapsed, label or f"entry, {connections} conns x {window} in "
                        "flight")
    await asyncio.gather(*(t.ws.close() for t in traders))
    return rate


async def paced(url: str, seconds: float, rate: float, connections: int) -> None:
    """Order entry at a fixed total rate."""
    traders = [Trader(url, KEYS[i], 100 + i) for i in range(connections)]
    await asyncio.gather(*(t.connect() for t in traders))
    start = time.perf_counter()
    await asyncio.gather(*(t.run_paced(rate / connections, start + seconds) for t in traders))
    latency_line(traders, time.perf_counter() - start, f"paced at {rate:,.0f}/s")
    await asyncio.gather(*(t.ws.close() for t in traders))


class FrameCounter(asyncio.Protocol):
    """Counts server-to-client WebSocket frames on a connection taken over after the
    handshake and subscriptions were done with `websockets`: parsing every frame with the
    websockets library in this process would make the load generator, not the server, the
    bottleneck. Server frames are unmasked: a 2-byte header, then 0, 2 or 8 length bytes."""

    def __init__(self) -> None:
        self.frames = 0
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        position, end, frames = 0, len(buffer), 0
        while end - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if end - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2:position + 4], "big")
                header = 4
            elif length == 127:
                if end - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2:position + 10], "big")
                header = 10
            if end - position < header + length:
                break
            position += header + length
            frames += 1
        self.frames += frames
        self.buffer = buffer[position:]


async def fanout(url: str, port: int, seconds: float, subscribers: int) -> None:
    """Many subscribers on one symbol while two connections trade."""
    counters: list[FrameCounter] = []
    connections = []
    for _ in range(subscribers):
        ws = await websockets.connect(url, compression=None, max_size=2**24)
        await ws.send('{"op":"subscribe","id":1,"channel":"trades","symbol":"BENCH"}')
        await ws.recv()
        await ws.send('{"op":"subscribe","id":2,"channel":"book","symbol":"BENCH",'
                      '"depth":10}')
        await ws.recv()
        counter = FrameCounter()
        ws.transport.set_protocol(counter)
        counters.append(counter)
        connections.append(ws)
    traders = [Trader(url, KEYS[8 + i], 200 + i) for i in range(2)]
    await asyncio.gather(*(t.connect() for t in traders))
    before = sum(c.frames for c in counters)
    start = time.perf_counter()
    await asyncio.gather(*(t.run_window(8, start + seconds) for t in traders))
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)  # let what is in flight arrive
    delivered = sum(c.frames for c in counters) - before
    orders = sum(t.acked for t in traders)
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as response:
        metrics = await response.text()
    dropped = _metric(metrics, "lobgw_ws_messages_dropped_total")
    slow = _metric(metrics, "lobgw_ws_slow_consumer_disconnects_total")
    print(f"fanout, {subscribers} subscribers x (book 10 + trades), {orders / elapsed:,.0f} "
          f"orders/s: {delivered / elapsed:,.0f} messages/s delivered "
          f"({delivered / max(1, subscribers):,.0f} per subscriber); dropped {dropped:.0f}, "
          f"slow-consumer closes {slow:.0f}")
    await asyncio.gather(*(t.ws.close() for t in traders))
    for ws in connections:
        ws.transport.abort()


async def compare_journal(directory: Path, args: argparse.Namespace) -> None:
    """Order entry without and with the journal, alternating short runs (this VM's speed
    drifts by up to 2x within a minute, so back-to-back long runs are not comparable)."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_number in range(args.rounds):
        for journaled in (False, True):
            port = free_port()
            url = f"ws://127.0.0.1:{port}/ws"
            folder = directory / f"j{round_number}{int(journaled)}"
            folder.mkdir()
            server = await start_server(write_config(folder, port, journal=journaled), port)
            try:
                label = "journaled (fsync=batch)" if journaled else "not journaled"
                rates[journaled].append(await entry(url, args.seconds / 2, args.window,
                                                    args.connections, label))
            finally:
                await stop_server(server)
    plain = statistics.median(rates[False])
    durable = statistics.median(rates[True])
    print(f"median over {args.rounds} alternating rounds: {plain:,.0f}/s without the journal, "
          f"{durable:,.0f}/s with it: the journal keeps {durable / plain:.0%}")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def main(argv: list[str] | None = None) -> None:
    """Run every workload against a fresh server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--paced-rate", type=float, default=0.0,
                        help="orders/s for the paced run (default: half of entry)")
    parser.add_argument("--journal", action="store_true",
                        help="also compare order entry with and without the journal")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds for the journal comparison")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} ({sys.executable}), {platform.machine()}, "
          f"{os.cpu_count()} cores; "
          f"server and load in separate processes on loopback")
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        url = f"ws://127.0.0.1:{port}/ws"
        server = await start_server(write_config(Path(directory), port), port)
        try:
            rate = await entry(url, args.seconds, args.window, args.connections)
            await paced(url, args.seconds, args.paced_rate or rate / 2, args.connections)
        finally:
            await stop_server(server)
        if args.journal:
            await compare_journal(Path(directory), args)
        port = free_port()
        url = f"ws://127.0.0.1:{port}/ws"
        server = await start_server(write_config(Path(directory), port), port)
        try:
            await fanout(url, port, args.seconds, args.subscribers)
        finally:
            await stop_server(server)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())

