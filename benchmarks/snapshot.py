"""Snapshots off the hot path: order-entry latency with and without snapshots of a big book.

Workload: `lobgw serve` in its own process with two journaled symbols (fsync per batch). BIG
is seeded with `--resting` resting orders (80,000 by default); then one WebSocket connection
per symbol sends orders at a steady `--rate` per second (alternately a new passive limit
order and a cancel of one of its own), for `--seconds`. Run twice: snapshots off, and a
snapshot every `--every` seconds. Prints ack latency p50 / p99 / max per symbol for each
run, the p99 ratio (snapshots on / off), and the server's own snapshot figures
(lobgw_snapshot_seconds: pause = how long the symbol was held, write = until durable).

    python benchmarks/snapshot.py [--resting N] [--rate R] [--seconds S] [--every E]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec
import websockets
from serving import free_port, start_server, stop_server, unlimited_server_toml

KEY = "snapshot-bench-key-000000000001"



def write_config(directory: Path, port: int, every: float, fsync: str) -> Path:
    """Two symbols, one account, a journal with snapshots every `every` seconds."""
    path = directory / "snapshot-bench.toml"
    path.write_text(f"""
[[symbols]]
symbol = "BIG"
tick_size = "0.01"
lot_size = "1"

[[symbols]]
symbol = "SMALL"
tick_size = "0.01"
lot_size = "1"

[[accounts]]
name = "bench"
api_key = "{KEY}"

{unlimited_server_toml(port)}
[journal]
directory = "{directory / "journal"}"
fsync = "{fsync}"
snapshot_every_commands = 100000000
snapshot_every_seconds = {every}

[logging]
access_log = false
level = "WARNING"
""")
    return path



async def connect(url: str) -> websockets.ClientConnection:
    """An authenticated connection."""
    ws = await websockets.connect(url, compression=None, max_size=2**24)
    await ws.send(msgspec.json.encode({"op": "auth", "id": 0, "api_key": KEY}).decode())
    await ws.recv()
    return ws


async def seed(url: str, count: int) -> None:
    """`count` resting bids on BIG, pipelined 256 at a time."""
    ws = await connect(url)
    sent = 0
    while sent < count:
        window = min(256, count - sent)
        for offset in range(window):
            index = sent + offset
            price = f"{10 + (index % 4000) / 100:.2f}"  # 4,000 levels below the action
            await ws.send(f'{{"op":"place","id":{index + 1},"order":{{"symbol":"BIG",'
                          f'"side":"BUY","quantity":"1","price":"{price}"}}}}')
        for _ in range(window):
            await ws.recv()
        sent += window
    await ws.close()


async def paced(url: str, symbol: str, rate: float, seconds: float) -> list[float]:
    """Send at `rate` per second: a new ask far from the bids, then a cancel of it."""
    ws = await connect(url)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    resting: list[int] = []

    async def read() -> None:
        async for raw in ws:
            reply = msgspec.json.decode(raw)
            started = sent_at.pop(reply.get("id"), None)
            if started is None:
                continue
            latencies.append(time.perf_counter() - started)
            order = (reply.get("result") or {}).get("order") or {}
            if order.get("status") == "NEW":
                resting.append(order["order_id"])

    reader = asyncio.create_task(read())
    interval = 1.0 / rate
    start = next_send = time.perf_counter()
    request_id = 1
    while next_send - start < seconds:
        request_id += 1
        sent_at[request_id] = time.perf_counter()
        if resting:
            await ws.send(f'{{"op":"cancel","id":{request_id},"order_id":{resting.pop()}}}')
        else:
            await ws.send(f'{{"op":"place","id":{request_id},"order":{{"symbol":"{symbol}",'
                          f'"side":"SELL","quantity":"1","price":"{90 + request_id % 50}"}}}}')
        next_send += interval
        delay = next_send - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    deadline = time.perf_counter() + 10
    while sent_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    reader.cancel()
    await ws.close()
    return latencies


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_run(every: float, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seed, load both symbols, and return their ack latencies (plus the snapshot figures)."""
    with tempfile.TemporaryDirectory() as name:
        port = free_port()
        process = await start_server(write_config(Path(name), port, every, args.fsync), port)
        url = f"ws://127.0.0.1:{port}/ws"
        try:
            await seed(url, args.resting)
            results = await asyncio.gather(*(paced(url, symbol, args.rate, args.seconds)
                                              for symbol in ("BIG", "SMALL")))
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{port}/metrics") as reply:
                metrics = await reply.text()
        finally:
            await stop_server(process)
    figures: dict[str, list[float]] = {"BIG": results[0], "SMALL": results[1]}
    for phase in ("pause", "write"):
        pattern = (r"lobgw_snapshot_seconds_(sum|count)\{phase=\"" + phase
                   + r"\",symbol=\"BIG\"\} ([0-9.e+-]+)")
        found = dict(re.findall(pattern, metrics))
        figures[phase] = [float(found.get("sum", 0)), float(found.get("count", 0))]
    return figures


def main() -> None:
    """Both runs, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resting", type=int, default=80_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--fsync", default="batch", choices=["batch", "always", "off"],
                        help="the journal's fsync policy (default batch)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} ({sys.executable}); {args.resting:,} resting "
          f"orders on BIG; {args.rate:,.0f} requests/s on BIG and on SMALL for "
          f"{args.seconds:.0f} s; journal fsync {args.fsync}")
    off = asyncio.run(one_run(1e9, args))
    on = asyncio.run(one_run(args.every, args))
    for label, run in (("snapshots off", off), (f"every {args.every:g} s", on)):
        for symbol in ("BIG", "SMALL"):
            values = run[symbol]
            print(f"{label:14} {symbol:5} {len(values):>7,} acks  p50 "
                  f"{statistics.median(values) * 1e3:6.2f} ms  p99 "
                  f"{quantile(values, 0.99) * 1e3:6.2f} ms  max {max(values) * 1e3:7.2f} ms")
    for symbol in ("BIG", "SMALL"):
        ratio = quantile(on[symbol], 0.99) / quantile(off[symbol], 0.99)
        print(f"p99 ratio (snapshots on / off) on {symbol}: {ratio:.2f}")
    (pause_sum, count), (write_sum, _) = on["pause"], on["write"]
    if count:
        print(f"snapshots of BIG: {count:.0f}, mean pause {pause_sum / count * 1e3:.2f} ms, "
              f"mean write {write_sum / count * 1e3:.0f} ms (encoded on the loop in pieces)")


if __name__ == "__main__":
    main()
