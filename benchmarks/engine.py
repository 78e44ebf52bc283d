"""Matching-engine throughput: commands/s, events/s and peak memory on one core.

Workloads:
  synthetic  lobgw.book.synthetic: a seeded stream of 1,000,000 commands on one symbol:
             55% limit orders around a drifting mid (about 10% marketable, some
             sweeping several levels; IOC, FOK, post-only, all STP modes), 35%
             cancels of live orders, 5% quantity-reducing amends, 5% market orders;
             the book holds several hundred resting orders.
  lobster    the AMZN 2012-06-21 level-1 LOBSTER message file (57,515 rows): type 1 adds a
             limit order, 2 reduces, 3 deletes, 4 executes the resting order; other types and
             events on orders the file never added are counted and skipped.

Each workload is timed over 5 runs on a fresh engine, commands prebuilt, every event
produced; the median and the best run are printed (shared VMs vary by up to 2x between runs,
so read both). `apply` is one call per command; `batch` is `apply_batch` on slices of 256
commands, the way an actor drains its queue. `bare` is benchmarks/bare_reference.py, a matching
loop with no events or checks, run on the same stream to calibrate the machine. Peak memory
is measured in a separate run under tracemalloc (engine state and events in flight), and the
process's peak RSS (which includes the prebuilt commands) is printed at the end.

    python benchmarks/engine.py [--commands N] [--runs R]
"""

from __future__ import annotations

import argparse
import csv
import gc
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from bare_reference import BareBook

from lobgw.book.commands import (
    AnyCommand,
    CancelOrder,
    ExecuteOrder,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.engine import Engine
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.synthetic import SYNTHETIC_SPEC, synthetic_commands
from lobgw.book.types import SelfTradePrevention, Side

LOBSTER_FILE = (Path(__file__).parent.parent / "tests" / "data"
                / "AMZN_2012-06-21_34200000_57600000_message_1.csv")
LOBSTER_SPEC = InstrumentSpec("AMZN", Decimal("1"), Decimal("1"))
BATCH = 256


def lobster_commands(path: Path) -> tuple[list[AnyCommand], int]:
    """Turn a LOBSTER message file into engine commands; return them and the rows skipped."""
    commands: list[AnyCommand] = []
    added: set[int] = set()
    skipped = 0
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            seconds, kind, order_id, size, price, direction = row[:6]
            ts = int(Decimal(seconds) * 1_000_000_000)
            oid, qty = int(order_id), int(size)
            if kind == "1":
                side = Side.BUY if direction == "1" else Side.SELL
                commands.append(SubmitOrder(oid, "market", side, qty, price=int(price),
                                            stp=SelfTradePrevention.NONE, timestamp=ts))
                added.add(oid)
            elif kind in "234" and oid in added:
                if kind == "2":
                    commands.append(ReduceOrder(oid, qty, timestamp=ts))
                elif kind == "3":
                    commands.append(CancelOrder(oid, timestamp=ts))
                else:
                    commands.append(ExecuteOrder(oid, qty, timestamp=ts))
            else:
                skipped += 1
    return commands, skipped


def time_run(
    spec: InstrumentSpec, commands: Sequence[AnyCommand], mode: str
) -> tuple[float, int]:
    """Apply all commands to a fresh engine; return seconds taken and events produced."""
    engine = Engine(spec)
    events = 0
    gc.collect()
    if mode == "bare":
        apply_bare = BareBook().apply
        start = time.perf_counter()
        for command in commands:
            apply_bare(command)
    elif mode == "batch":
        apply_batch = engine.apply_batch
        start = time.perf_counter()
        for begin in range(0, len(commands), BATCH):
            events += len(apply_batch(commands[begin:begin + BATCH]))
    else:
        apply = engine.apply
        start = time.perf_counter()
        for command in commands:
            events += len(apply(command))
    return time.perf_counter() - start, events


def peak_memory(spec: InstrumentSpec, commands: Sequence[AnyCommand]) -> int:
    """Peak bytes allocated while running the stream (commands themselves excluded)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    engine = Engine(spec)
    for command in commands:
        engine.apply(command)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def report(name: str, spec: InstrumentSpec, commands: list[AnyCommand], runs: int,
           modes: Sequence[str]) -> None:
    """Print one table row per driving mode for a workload."""
    for mode in modes:
        results = [time_run(spec, commands, mode) for _ in range(runs)]
        seconds = statistics.median(r[0] for r in results)
        best = min(r[0] for r in results)
        events = results[0][1]
        print(f"{name:<10} {mode:<6} {len(commands):>10,} {events:>10,} "
              f"{len(commands) / seconds:>12,.0f} {len(commands) / best:>12,.0f} "
              f"{events / seconds:>12,.0f} {seconds * 1e9 / len(commands):>8,.0f}")
    peak = peak_memory(spec, commands)
    print(f"{name:<10} engine peak memory (tracemalloc) {peak / 2**20:,.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    """Run both workloads and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} ({sys.executable}), "
          f"{platform.machine()}, {platform.system()}; median of {args.runs} runs")
    synthetic = synthetic_commands(args.commands)
    lobster, skipped = lobster_commands(LOBSTER_FILE)
    print(f"{'workload':<10} {'mode':<6} {'commands':>10} {'events':>10} "
          f"{'cmd/s median':>12} {'cmd/s best':>12} {'events/s':>12} {'ns/cmd':>8}")
    report("synthetic", SYNTHETIC_SPEC, synthetic, args.runs, ("apply", "batch", "bare"))
    report("lobster", LOBSTER_SPEC, lobster, args.runs, ("apply", "batch"))
    print(f"lobster: {skipped:,} rows skipped (types 5-7, or orders the file never added)")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"process peak RSS {peak_rss / 1024:,.0f} MiB (includes the prebuilt commands)")


if __name__ == "__main__":
    main()
