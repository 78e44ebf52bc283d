"""The `lobgw` command line: one module per command.

    lobgw init      a starter config.toml with fresh API keys          (init.py)
    lobgw serve     the gateway                                        (serve.py)
    lobgw replay    replay market data through a symbol actor          (replay.py)
    lobgw backtest  a strategy on replayed market data                 (backtest.py)
    lobgw journal   inspect a journal or rebuild a book from it        (journal.py)
    lobgw demo      a synthetic order flow through one symbol actor    (demo.py)
"""

from __future__ import annotations

import argparse
import os
import sys

from lobgw import __version__
from lobgw.cli import backtest, demo, init, journal, replay, serve


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every lobgw command."""
    parser = argparse.ArgumentParser(
        prog="lobgw", description="Limit-order-book exchange gateway.")
    parser.add_argument("--version", action="version", version=f"lobgw {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str | None,
            arguments: object, handler: object) -> None:
        sub = commands.add_parser(name, help=help_text, description=description or help_text)
        arguments(sub)  # type: ignore[operator]
        sub.set_defaults(handler=handler)

    add("init", "write a starter config.toml with fresh API keys", init.__doc__,
        init.add_arguments, init.init)
    add("serve", "run the gateway (REST + WebSocket) until SIGINT/SIGTERM", None,
        serve.add_arguments, serve.serve)
    add("replay", "replay csv, LOBSTER or Databento MBO data through the matching engine",
        "Replay a market-data file through a symbol actor (or into a running gateway with "
        "--into) and print a summary.", replay.add_replay_arguments, replay.replay_command)
    add("backtest", "backtest a TWAP, VWAP or market-making strategy on replayed data",
        "Replay market data with a strategy trading in the same book; write results as JSON "
        "(and a plot), print a summary.", backtest.add_backtest_arguments,
        backtest.backtest_command)
    add("journal", "inspect a journal or rebuild a book from it",
        "Read-only tools over a gateway's journal directory.", journal.add_arguments,
        journal.command)
    add("demo", "run a synthetic order flow through the matching engine", demo.demo.__doc__,
        demo.add_arguments, demo.demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lobgw` script."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`lobgw demo | head`): stop quietly. Point stdout at devnull
        # so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result


def replay_main() -> int:
    """Entry point of the `lob-replay` script (same as `lobgw replay`)."""
    return main(["replay", *sys.argv[1:]])
