"""`lobgw replay` (also `lob-replay`): replay a market-data file through a symbol actor, or
into a running gateway, and print a summary."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

from lobgw.cli.common import data_and_spec
from lobgw.errors import BadRowError
from lobgw.sim.replay import replay_file, replay_into


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lobgw replay` / `lob-replay`."""
    parser.add_argument("file", type=Path, help="the data file")
    parser.add_argument("--format", required=True, choices=["csv", "lobster", "databento-mbo"])
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--config", default=os.environ.get("LOBGW_CONFIG", "config.toml"),
                        help="where to look for the symbol's spec (default config.toml)")
    parser.add_argument("--tick-size", type=Decimal, help="databento-mbo: override the tick")
    parser.add_argument("--initial-book", type=Path,
                        help="lobster: seed from row 1 of this orderbook file")
    parser.add_argument("--book-out", type=Path, help="write the top levels after every row")
    parser.add_argument("--levels", type=int, default=5, help="levels in --book-out (5)")
    parser.add_argument("--speed", type=float, help="replay in data time divided by X")
    parser.add_argument("--into", help="replay into a running gateway: ws://host:port/ws")
    parser.add_argument("--api-key", default=os.environ.get("LOBGW_API_KEY"),
                        help="with --into: the key to trade with (or $LOBGW_API_KEY)")
    parser.add_argument("--on-error", choices=["stop", "skip"], default="stop")
    parser.add_argument("--no-progress", action="store_true", help="never show progress")


def replay_command(args: argparse.Namespace) -> int:
    """Run `lobgw replay`."""
    path: Path = args.file
    spec = data_and_spec("replay", path, args)
    if spec is None:
        return 2
    if args.book_out is not None:
        args.book_out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if args.into:
            if not args.api_key:
                print("lobgw replay: --into needs --api-key (or $LOBGW_API_KEY)",
                      file=sys.stderr)
                return 2
            summary = asyncio.run(replay_into(args.into, args.api_key, path, args.format,
                                              spec, args.speed))
        else:
            summary = asyncio.run(replay_file(
                path, args.format, spec, initial_book=args.initial_book,
                book_out=args.book_out, levels=args.levels, speed=args.speed,
                on_error=args.on_error, progress=False if args.no_progress else None))
    except BadRowError as error:
        print(f"lobgw replay: bad row: {error.path}:{error.line}: {error.reason} "
              "(use --on-error skip to skip bad rows)", file=sys.stderr)
        return 1
    print(summary.table())
    return 0
