"""`lobgw backtest`: replay market data with a strategy trading in the same book; write the
result JSON (and a plot) and print a summary."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from lobgw.book import FeeSchedule
from lobgw.cli.common import configured_fees, data_and_spec
from lobgw.errors import BadRowError, ConfigError, InputError
from lobgw.sim.backtest import IMPACTS, build_strategy, parse_params, run_backtest
from lobgw.sim.backtest.core import epoch_offset
from lobgw.sim.backtest.latency import read_latency_file
from lobgw.sim.backtest.levels import QUEUE_MODELS, QueueModel, split_levels
from lobgw.sim.records import (
    read_databento_mbp,
    read_lobster_book_row,
    read_lobster_levels,
    read_records,
)
from lobgw.sim.translate import Translator


def _latency(text: str) -> int:
    """A latency in whole microseconds, 0 or more (argparse names the option on error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of "
                                         "microseconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; a latency is at least 0")
    return value


_FEE_KEYS = ("maker_bps", "taker_bps", "maker_per_unit", "taker_per_unit")


def parse_fees(text: str) -> FeeSchedule:
    """`--fees maker_bps=-0.2,taker_bps=0.3,...` (argparse names the option on error)."""
    values: dict[str, Decimal] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in _FEE_KEYS:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected KEY=VALUE with KEY one of {', '.join(_FEE_KEYS)}")
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite():
            raise argparse.ArgumentTypeError(f"{key}={value!r}: not a decimal number")
        values[key] = number
    return FeeSchedule(**values)  # type: ignore[arg-type]


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lobgw backtest`."""
    parser.add_argument("--data", type=Path, required=True, help="the market-data file")
    parser.add_argument("--format", required=True,
                        choices=["csv", "lobster", "databento-mbo", "databento-mbp10"],
                        help="databento-mbp10: aggregated levels (see --queue-model)")
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--strategy", required=True, choices=["twap", "vwap", "mm"])
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="strategy parameter (repeatable); see README for each strategy")
    parser.add_argument("--latency-us", type=_latency, default=0,
                        help="data-time delay before strategy actions reach the book "
                             "(microseconds, 0 or more)")
    parser.add_argument("--response-latency-us", type=_latency, default=0,
                        help="data-time delay before the strategy learns of a fill")
    parser.add_argument("--feed-latency-us", type=_latency, default=0,
                        help="data-time delay before the strategy sees market data, after the "
                             "data's own receive time where it has one (Databento ts_recv)")
    parser.add_argument("--latency-file", type=Path,
                        help="measured latencies: CSV time,entry_us,response_us (time in the "
                             "data's clock), interpolated; instead of the two constants")
    parser.add_argument("--history", type=Path, action="append", default=[],
                        metavar="FILE", help="vwap: another day's data file (repeatable); the "
                        "profile is their volume at the same time of day")
    parser.add_argument("--book-levels", type=Path, metavar="ORDERBOOK_FILE",
                        help="lobster: back the book with this orderbook file, reset to its "
                             "levels at every row (aggregated data; see --queue-model)")
    parser.add_argument("--queue-model", choices=list(QUEUE_MODELS), default="risk-averse",
                        help="with --book-levels: where a strategy order stands in a level")
    parser.add_argument("--queue-power", type=float, default=2.0,
                        help="probabilistic queue model: f(x) = x^power")
    parser.add_argument("--fees", type=parse_fees, metavar="KEY=VALUE,...",
                        help="fee schedule: maker_bps, taker_bps (of notional), "
                             "maker_per_unit, taker_per_unit; negative = rebate (default: the "
                             "config's [[fees]] for the symbol, else none)")
    parser.add_argument("--impact", choices=list(IMPACTS), default="none",
                        help="market-impact model: none (the book stays the data's; "
                             "default) or queue (fills displace the historical order)")
    parser.add_argument("--initial-book", type=Path,
                        help="lobster: seed from row 1 of this orderbook file")
    parser.add_argument("--config", default=os.environ.get("LOBGW_CONFIG", "config.toml"))
    parser.add_argument("--tick-size", type=Decimal)
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--plot", type=Path, help="PNG report (needs matplotlib: lobgw[plot])")


def backtest_command(args: argparse.Namespace) -> int:
    """Run `lobgw backtest`."""
    path: Path = args.data
    spec = data_and_spec("backtest", path, args)
    if spec is None:
        return 2
    try:
        params = parse_params(args.param)
        strategy, target, side = build_strategy(args.strategy, params, spec, args.format, path,
                                                args.history)
    except (ConfigError, ValueError, InvalidOperation) as error:
        print(f"lobgw backtest: {error}", file=sys.stderr)
        return 2
    except InputError as error:
        print(f"lobgw backtest: --param {error.field}: {error.reason}", file=sys.stderr)
        return 2
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("lobgw backtest: --plot needs matplotlib (pip install 'lobgw[plot]')",
                  file=sys.stderr)
            return 2
    table = None
    if args.latency_file is not None:
        try:
            table = read_latency_file(args.latency_file)
        except (OSError, ValueError) as error:
            print(f"lobgw backtest: --latency-file: {error}", file=sys.stderr)
            return 2
    levels = queue = None
    if args.book_levels is not None:
        if args.format != "lobster" or not args.book_levels.exists():
            print("lobgw backtest: --book-levels: needs --format lobster and an existing "
                  "orderbook file", file=sys.stderr)
            return 2
        try:
            queue = QueueModel(args.queue_model, args.queue_power)
        except ValueError as error:
            print(f"lobgw backtest: --queue-power: {error}", file=sys.stderr)
            return 2
        levels = read_lobster_levels(args.book_levels, spec)
    seed = read_lobster_book_row(args.initial_book, 1, spec) if args.initial_book else None
    records = read_records(args.format, path, spec)
    if args.format == "databento-mbp10":  # the events and their levels from one file
        records, levels = split_levels(read_databento_mbp(path, spec))
        queue = QueueModel(args.queue_model, args.queue_power)
    try:
        result = asyncio.run(run_backtest(
            records, spec, strategy, latency_us=args.latency_us, seed_levels=seed,
            strategy_name=args.strategy, parameters=params, target=target, side=side,
            translator=Translator.for_format(args.format), impact=args.impact,
            fees=args.fees or configured_fees(spec.symbol, args.config),
            response_latency_us=args.response_latency_us,
            feed_latency_us=args.feed_latency_us, latency_table=table,
            epoch_offset=epoch_offset(args.format, path), levels=levels, queue_model=queue))
    except BadRowError as error:
        print(f"lobgw backtest: bad row: {error.path}:{error.line}: {error.reason}",
              file=sys.stderr)
        return 1
    except ValueError as error:  # e.g. an orderbook file shorter than the messages
        print(f"lobgw backtest: {error}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
    print(result.table())
    if args.plot is not None:
        from lobgw.sim.backtest.plot import plot_result

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_result(result, spec, args.plot)
        print(f"plot written to {args.plot}")
    return 0
