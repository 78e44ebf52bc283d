"""Recovery speed: how fast a restart replays a journal.

Writes a journal of the synthetic order flow (lobgw.book.synthetic, 500,000 commands) with the
journal's own code, in records of 64 commands (an actor batch under load), then times what a
gateway start does: read and check every record, decode it, and apply it through the symbol
actor. Two ways: `actor`, the actor alone, and `gateway`, a real gateway app recovering with
all its listeners (order registry and history, market data, metrics) until it is ready.
Prints records/s and commands/s (median of 3 each).

    python benchmarks/recovery.py [--commands N] [--batch B]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from aiohttp import web

from lobgw.actors import Exchange
from lobgw.actors.journal import Journal
from lobgw.book.synthetic import SYNTHETIC_SPEC, synthetic_commands
from lobgw.config import Config
from lobgw.gateway.app import create_app
from lobgw.gateway.keys import EXCHANGE, STATE


async def recover(directory: Path) -> tuple[float, int, int]:
    """One timed recovery: seconds, records, commands."""
    journal = Journal(directory, SYNTHETIC_SPEC.symbol, snapshot_every_commands=1 << 40)
    exchange = Exchange([SYNTHETIC_SPEC], journals={SYNTHETIC_SPEC.symbol: journal})
    started = time.perf_counter()
    recoveries = await exchange.recover()
    elapsed = time.perf_counter() - started
    journal.commands_since_snapshot = 0  # no final snapshot: every run replays the whole log
    await exchange.stop()
    recovery = recoveries[SYNTHETIC_SPEC.symbol]
    return elapsed, recovery.records, recovery.commands


async def recover_gateway(directory: Path) -> tuple[float, int, int]:
    """One timed start of a gateway app on the journal: until it is ready."""
    config = msgspec.convert({
        "symbols": [msgspec.to_builtins(SYNTHETIC_SPEC)],
        "journal": {"directory": str(directory), "snapshot_every_commands": 1 << 40,
                    "snapshot_every_seconds": 1e9},
        "logging": {"access_log": False}}, Config)
    app = create_app(config)
    runner = web.AppRunner(app)
    started = time.perf_counter()
    await runner.setup()
    recovery_task = app[STATE].recovery
    assert recovery_task is not None
    await recovery_task
    elapsed = time.perf_counter() - started
    exchange = app[EXCHANGE]
    for actor in exchange.actors.values():
        assert actor.journal is not None
        actor.journal.commands_since_snapshot = 0  # no final snapshot: runs stay equal
    recovery = exchange.recoveries[SYNTHETIC_SPEC.symbol]
    await runner.cleanup()
    return elapsed, recovery.records, recovery.commands


def main() -> None:
    """Write a journal, then time three recoveries of it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"python {platform.python_version()} ({sys.executable}); median of 3 recoveries")
    commands = synthetic_commands(args.commands)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        journal = Journal(directory, SYNTHETIC_SPEC.symbol, fsync="off")
        journal.open()
        for start in range(0, len(commands), args.batch):
            journal.append(commands[start:start + args.batch])
        journal.close()
        size = sum(p.stat().st_size for p in (directory / SYNTHETIC_SPEC.symbol).iterdir())
        print(f"journal: {len(commands) // args.batch:,} records, {len(commands):,} "
              f"commands, {size / 2**20:,.1f} MiB")
        for mode, run in (("actor", recover), ("gateway", recover_gateway)):
            # recovery truncates nothing here, and no snapshot is written: runs are equal
            runs = [asyncio.run(run(directory)) for _ in range(3)]
            seconds = statistics.median(one[0] for one in runs)
            _, records, replayed = runs[0]
            print(f"{mode:8} recovery: {seconds:.2f} s, {records / seconds:,.0f} records/s, "
                  f"{replayed / seconds:,.0f} commands/s")


if __name__ == "__main__":
    main()
