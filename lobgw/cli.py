"""The `lobgw` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time

import msgspec

from lobgw.book.engine import Engine
from lobgw.sim.synthetic import SYNTHETIC_SPEC, synthetic_commands


def demo(args: argparse.Namespace) -> int:
    """Run a synthetic order flow through one engine and show the resulting book."""
    commands = synthetic_commands(args.commands, seed=args.seed)
    engine = Engine(SYNTHETIC_SPEC)
    start = time.perf_counter()
    events = engine.apply_batch(commands)
    elapsed = time.perf_counter() - start
    spec = engine.spec
    counters = engine.counters()
    print(f"{len(commands):,} commands -> {len(events):,} events in {elapsed:.2f}s "
          f"({len(commands) / elapsed:,.0f} commands/s)")
    print(f"orders accepted {counters.orders:,}, rejected {counters.rejections:,}, "
          f"trades {counters.trades:,}, volume {spec.lots_to_quantity(counters.volume)}")
    bids, asks = engine.depth(5)
    print(f"\n{spec.symbol} top of book ({engine.open_order_count()} resting orders)")
    print(f"{'bid size':>10} {'bid':>10} | {'ask':<10} {'ask size':<10}")
    for level in range(max(len(bids), len(asks))):
        bid = bids[level] if level < len(bids) else None
        ask = asks[level] if level < len(asks) else None
        print(f"{spec.lots_to_quantity(bid[1]) if bid else '':>10} "
              f"{spec.ticks_to_price(bid[0]) if bid else '':>10} | "
              f"{spec.ticks_to_price(ask[0]) if ask else '':<10} "
              f"{spec.lots_to_quantity(ask[1]) if ask else '':<10}")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT or SIGTERM."""
    from lobgw.config import load_config
    from lobgw.errors import ConfigError
    from lobgw.gateway.logs import configure_logging
    from lobgw.gateway.server import run
    from lobgw.gateway.server import serve as serve_forever

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"lobgw: bad configuration: {error}", file=sys.stderr)
        return 2
    if args.host is not None or args.port is not None:
        server = msgspec.structs.replace(
            config.server,
            host=config.server.host if args.host is None else args.host,
            port=config.server.port if args.port is None else args.port)
        config = msgspec.structs.replace(config, server=server)
    configure_logging(config.logging.format, config.logging.level)
    return run(serve_forever(config, repair=args.repair))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every lobgw command."""
    parser = argparse.ArgumentParser(
        prog="lobgw", description="Limit-order-book exchange gateway.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo", help="run a synthetic order flow through the matching engine",
        description=demo.__doc__)
    demo_parser.add_argument("--commands", type=int, default=200_000,
                             help="how many synthetic commands (default 200000)")
    demo_parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo_parser.set_defaults(handler=demo)

    serve_parser = commands.add_parser(
        "serve", help="run the gateway (REST + WebSocket) until SIGINT/SIGTERM",
        description=serve.__doc__)
    serve_parser.add_argument("--config", default=os.environ.get("LOBGW_CONFIG", "config.toml"),
                              help="configuration file (default: $LOBGW_CONFIG or config.toml)")
    serve_parser.add_argument("--host", help="listen address (overrides server.host)")
    serve_parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve_parser.add_argument("--repair", action="store_true",
                              help="on journal corruption, keep what precedes it and "
                                   "quarantine the rest instead of refusing to start")
    serve_parser.set_defaults(handler=serve)

    from lobgw.sim.run import add_replay_arguments, replay_command

    replay_parser = commands.add_parser(
        "replay", help="replay csv, LOBSTER or Databento MBO data through the matching engine",
        description="Replay a market-data file through a symbol actor (or into a running "
                    "gateway with --into) and print a summary.")
    add_replay_arguments(replay_parser)
    replay_parser.set_defaults(handler=replay_command)

    from lobgw.sim.run import add_backtest_arguments, backtest_command

    backtest_parser = commands.add_parser(
        "backtest", help="backtest a TWAP, VWAP or market-making strategy on replayed data",
        description="Replay market data with a strategy trading in the same book; write "
                    "results as JSON (and a plot), print a summary.")
    add_backtest_arguments(backtest_parser)
    backtest_parser.set_defaults(handler=backtest_command)

    from lobgw import journal_tools

    journal_parser = commands.add_parser(
        "journal", help="inspect a journal or rebuild a book from it",
        description="Read-only tools over a gateway's journal directory.")
    journal_tools.add_arguments(journal_parser)
    journal_parser.set_defaults(handler=journal_tools.command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lobgw` script."""
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


def replay_main() -> int:
    """Entry point of the `lob-replay` script (same as `lobgw replay`)."""
    return main(["replay", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
