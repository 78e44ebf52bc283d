"""Replay and backtest speed: rows/s through the actor queue, and full-day backtests.

Workloads:
  replay   each file read, translated and applied through a symbol actor's queue in-process
           (the same path as `lobgw replay`), 5 runs, median and best (one run takes
           0.1-0.2 s; one stall of a shared VM moves it a lot): the LOBSTER AMZN 2012-06-21
           full-day level-1 file (57,515 rows), the AMZN 2021 level-10 file (40,674 rows) and
           the Databento CLX5 MBO file (38,212 rows).
  backtest each strategy over the full-day AMZN level-1 file, 500 us latency (one run each):
           twap and vwap selling 20,000 shares over the day in 50 slices; mm quoting 100
           shares 2 cents wide with inventory skew and a 1,000-share limit.

    python benchmarks/replay.py
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

from lobgw.sim.backtest import build_strategy, run_backtest
from lobgw.sim.records import databento_spec, lobster_spec, read_records
from lobgw.sim.replay import replay_file

DATA = Path(__file__).parent.parent / "tests" / "data"
FILES = [
    ("lobster AMZN 2012 L1", DATA / "AMZN_2012-06-21_34200000_57600000_message_1.csv",
     "lobster"),
    ("lobster AMZN 2021 L10", DATA / "AMZN_2021-04-12_34200000_57600000_message_10.csv",
     "lobster"),
    ("databento CLX5 MBO", DATA / "CLX5_mbo.csv", "databento-mbo"),
]
BACKTESTS = [
    ("twap", {"side": "SELL", "quantity": "20000", "slices": "50"}),
    ("vwap", {"side": "SELL", "quantity": "20000", "slices": "50"}),
    ("mm", {"size": "100", "half_spread": "200", "skew": "0.2", "max_inventory": "1000",
            "min_requote_ms": "50"}),
]


def main() -> None:
    """Print the replay and backtest tables."""
    print(f"python {platform.python_version()} ({sys.executable}), {platform.machine()}; "
          "one process, one core")
    print(f"{'replay':<24} {'rows':>8} {'events':>8} {'rows/s':>10} {'best':>10} "
          f"{'events/s':>10}")
    for label, path, fmt in FILES:
        spec = (lobster_spec("BENCH") if fmt == "lobster"
                else databento_spec("BENCH", path))
        runs = [asyncio.run(replay_file(path, fmt, spec, progress=False)) for _ in range(5)]
        seconds = statistics.median(run.seconds for run in runs)
        best = min(run.seconds for run in runs)
        print(f"{label:<24} {runs[0].rows:>8,} {runs[0].events:>8,} "
              f"{runs[0].rows / seconds:>10,.0f} {runs[0].rows / best:>10,.0f} "
              f"{runs[0].events / seconds:>10,.0f}")
    path = FILES[0][1]
    spec = lobster_spec("AMZN")
    print(f"\n{'backtest (AMZN full day)':<24} {'seconds':>8} {'fills':>8} {'orders':>8}")
    for name, params in BACKTESTS:
        strategy, target, side = build_strategy(name, params, spec, "lobster", path)
        started = time.perf_counter()
        result = asyncio.run(run_backtest(read_records("lobster", path, spec), spec, strategy,
                                          latency_us=500, strategy_name=name,
                                          parameters=params, target=target, side=side))
        elapsed = time.perf_counter() - started
        print(f"{name:<24} {elapsed:>8.2f} {result.fills:>8,} {result.orders_sent:>8,}")


if __name__ == "__main__":
    main()
