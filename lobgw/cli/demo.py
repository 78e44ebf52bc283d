"""`lobgw demo`: a synthetic order flow through one symbol actor, and the book it leaves."""

from __future__ import annotations

import argparse
import asyncio
import time

from lobgw.actors import Exchange
from lobgw.book.synthetic import SYNTHETIC_SPEC, synthetic_commands
from lobgw.book.views import Counters

SLICE = 256


async def _run(commands: list[object]) -> tuple[int, float, Counters, int,
                                                 tuple[list[tuple[int, int]],
                                                       list[tuple[int, int]]]]:
    exchange = Exchange([SYNTHETIC_SPEC])
    exchange.start()
    actor = exchange.actor(SYNTHETIC_SPEC.symbol)
    events = 0
    try:
        start = time.perf_counter()
        futures = [await actor.send([commands[i:i + SLICE]])  # type: ignore[list-item]
                   for i in range(0, len(commands), SLICE)]
        for future in futures:
            events += len(await future)
        elapsed = time.perf_counter() - start
        resting, depth = await actor.query(lambda book: (book.open_order_count(),
                                                         book.depth(5)))
    finally:
        await exchange.stop()
    return events, elapsed, actor.counters, resting, depth


def demo(args: argparse.Namespace) -> int:
    """Run a synthetic order flow through one symbol actor and show the resulting book."""
    commands = synthetic_commands(args.commands, seed=args.seed)
    events, elapsed, counters, resting, (bids, asks) = asyncio.run(
        _run(list(commands)))
    spec = SYNTHETIC_SPEC
    print(f"{len(commands):,} commands -> {events:,} events in {elapsed:.2f}s "
          f"({len(commands) / elapsed:,.0f} commands/s)")
    print(f"orders accepted {counters.orders:,}, rejected {counters.rejections:,}, "
          f"trades {counters.trades:,}, volume {spec.lots_to_quantity(counters.volume)}")
    print(f"\n{spec.symbol} top of book ({resting} resting orders)")
    print(f"{'bid size':>10} {'bid':>10} | {'ask':<10} {'ask size':<10}")
    for level in range(max(len(bids), len(asks))):
        bid = bids[level] if level < len(bids) else None
        ask = asks[level] if level < len(asks) else None
        print(f"{spec.lots_to_quantity(bid[1]) if bid else '':>10} "
              f"{spec.ticks_to_price(bid[0]) if bid else '':>10} | "
              f"{spec.ticks_to_price(ask[0]) if ask else '':<10} "
              f"{spec.lots_to_quantity(ask[1]) if ask else '':<10}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lobgw demo`."""
    parser.add_argument("--commands", type=int, default=200_000,
                        help="how many synthetic commands (default 200000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
