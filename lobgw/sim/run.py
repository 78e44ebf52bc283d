"""`lobgw replay`: wire a file, a reader, a translator and a sink together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import time
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from lobgw.actors import BookReader, Exchange
from lobgw.book.commands import ExecuteOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.config import load_config
from lobgw.errors import ConfigError, InputError
from lobgw.sim.backtest import NS, BaseStrategy, run_backtest
from lobgw.sim.records import (
    BadRowError,
    Kind,
    databento_spec,
    lobster_factors,
    lobster_spec,
    read_lobster_book_row,
    read_records,
)
from lobgw.sim.replay import (
    BookWriter,
    GatewayReplayer,
    Pacer,
    Progress,
    Replayer,
    ReplaySummary,
)
from lobgw.sim.strategies import MarketMaker, Twap, Vwap, read_profile
from lobgw.sim.translate import Translator


def resolve_spec(symbol: str, fmt: str, path: Path, config_path: str | None,
                 tick_size: Decimal | None = None) -> InstrumentSpec:
    """The symbol's configured spec, else the format's natural one."""
    if config_path is not None and Path(config_path).exists():
        try:
            config = load_config(config_path)
        except ConfigError:
            config = None
        if config is not None:
            for spec in config.symbols:
                if spec.symbol == symbol:
                    return spec
    if fmt == "lobster":
        return lobster_spec(symbol)
    if fmt == "databento-mbo":
        return databento_spec(symbol, path, tick_size)
    raise ConfigError(f"symbol {symbol!r} is not in the config; the csv format needs its "
                      "tick and lot sizes (add it to config.toml)")


@contextlib.contextmanager
def batch_gc(young: int = 50_000) -> Iterator[None]:
    """Run the cyclic garbage collector rarely while a batch job runs, then restore it.

    A replay allocates millions of short-lived, acyclic objects (records, commands, events)
    that reference counting frees; with the default threshold the collector still scans the
    young generation every 700 allocations, about 5% of a replay's time. What exists before
    the job is collected once, then frozen out of the full passes.
    """
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def replay_file(path: Path, fmt: str, spec: InstrumentSpec, *,
                      initial_book: Path | None = None, book_out: Path | None = None,
                      levels: int = 5, speed: float | None = None,
                      on_error: str = "stop", progress: bool | None = None) -> ReplaySummary:
    """Replay a file through an in-process actor; return the summary."""
    with batch_gc():
        return await _replay_file(path, fmt, spec, initial_book, book_out, levels, speed,
                                  on_error, progress)


async def _replay_file(path: Path, fmt: str, spec: InstrumentSpec,
                       initial_book: Path | None, book_out: Path | None, levels: int,
                       speed: float | None, on_error: str,
                       progress: bool | None) -> ReplaySummary:
    exchange = Exchange([spec])
    exchange.start()
    actor = exchange.actor(spec.symbol)
    translator = Translator.for_format(fmt)
    handle = book_out.open("w") if book_out is not None else None
    try:
        units = lobster_factors(spec) if fmt == "lobster" else None
        writer = (BookWriter(handle, levels, spec, units) if handle is not None else None)
        replayer = Replayer(actor, translator, on_error=on_error,  # type: ignore[arg-type]
                            book=writer, speed=speed, progress=Progress(progress))
        records = read_records(fmt, path, spec, skip_bad=on_error == "skip")
        if initial_book is not None:
            first = next(records)  # the orderbook row is the state after the first message
            await replayer.seed(translator.seed(read_lobster_book_row(initial_book, 1, spec),
                                                first.timestamp))
            replayer.summary.rows += 1
            if writer is not None:
                def capture(book: BookReader) -> None:
                    writer.pending.append(writer.capture(book))
                await actor.query(capture)
                writer.flush()
        return await replayer.run(records)
    finally:
        await exchange.stop()
        if handle is not None:
            handle.close()


async def replay_into(url: str, api_key: str, path: Path, fmt: str,
                      spec: InstrumentSpec, speed: float | None) -> ReplaySummary:
    """Replay a file into a running gateway over its WebSocket API."""
    from lobgw.client import LobgwClient

    client = await LobgwClient.connect(url, api_key=api_key)
    sink = GatewayReplayer(client, spec)
    translator = Translator.for_format(fmt)
    summary = ReplaySummary(translation=translator.stats)
    started = time.perf_counter()
    pacer = Pacer(speed) if speed else None
    try:
        for record in read_records(fmt, path, spec):
            summary.rows += 1
            if pacer is not None and (delay := pacer.delay(record.timestamp)):
                await asyncio.sleep(delay)
            for command in translator.translate(record):
                summary.commands += 1
                if isinstance(command, ExecuteOrder) and record.side is not None \
                        and record.price is not None:
                    await sink.execute_at(record.side, record.price, command.quantity)
                else:
                    await sink.send(command)
        await sink.close()
    finally:
        await client.close()
    summary.seconds = time.perf_counter() - started
    summary.errors = {"refused by the gateway": sink.refused} if sink.refused else {}
    return summary


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


def _data_and_spec(command: str, path: Path, args: argparse.Namespace
                   ) -> InstrumentSpec | None:
    """The symbol's spec for a data file, or None after printing why not."""
    if not path.exists():
        print(f"lobgw {command}: {path}: no such file", file=sys.stderr)
        return None
    try:
        return resolve_spec(args.symbol, args.format, path, args.config, args.tick_size)
    except ConfigError as error:
        print(f"lobgw {command}: {error}", file=sys.stderr)
        return None


def replay_command(args: argparse.Namespace) -> int:
    """Run `lobgw replay`."""
    path: Path = args.file
    spec = _data_and_spec("replay", path, args)
    if spec is None:
        return 2
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


# -- backtest ---------------------------------------------------------------------------------

def data_time_range(fmt: str, path: Path, spec: InstrumentSpec) -> tuple[int, int]:
    """First and last timestamps of a data file (streamed once)."""
    first = last = None
    for record in read_records(fmt, path, spec):
        if first is None:
            first = record.timestamp
        last = record.timestamp
    if first is None or last is None:
        raise ValueError(f"{path} has no rows")
    return first, last


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`k=v` pairs; a pair without `=` is an error naming it."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: expected key=value")
        params[key.strip()] = value.strip()
    return params


def build_strategy(name: str, params: dict[str, str], spec: InstrumentSpec, fmt: str,
                   path: Path) -> tuple[BaseStrategy, int | None, Side | None]:
    """The strategy for `--strategy` with its parameters (decimals in the symbol's units)."""
    known = {"twap": {"side", "quantity", "slices", "start", "end", "limit"},
             "vwap": {"side", "quantity", "slices", "start", "end", "limit", "profile"},
             "mm": {"size", "half_spread", "skew", "max_inventory", "min_requote_ms",
                    "reference"}}
    if name not in known:
        raise ValueError(f"unknown strategy {name!r}; choose twap, vwap or mm")
    unknown = set(params) - known[name]
    if unknown:
        raise ValueError(f"unknown parameter(s) for {name}: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(known[name]))}")
    if name == "mm":
        return MarketMaker(
            size=spec.quantity_to_lots(Decimal(params.get("size", str(spec.lot_size))), "size"),
            half_spread=int(params.get("half_spread", "1")),
            skew=float(params.get("skew", "0")),
            max_inventory=spec.quantity_to_lots(Decimal(params.get(
                "max_inventory", str(spec.lot_size * 10))), "max_inventory"),
            min_requote_ns=int(float(params.get("min_requote_ms", "100")) * 1_000_000),
            reference=params.get("reference", "mid")), None, None
    side = Side(params.get("side", "BUY").upper())
    quantity = spec.quantity_to_lots(Decimal(params.get("quantity", str(spec.lot_size * 100))))
    first, last = data_time_range(fmt, path, spec)
    start = first + int(Decimal(params.get("start", "0")) * NS)
    end = first + int(Decimal(params["end"]) * NS) if "end" in params else last
    slices = int(params.get("slices", "10"))
    limit = spec.price_to_ticks(Decimal(params["limit"]), "limit") if "limit" in params else None
    if name == "twap":
        return Twap(side, quantity, start, end, slices, limit), quantity, side
    profile_arg = params.get("profile", "causal")
    profile = lookahead = None
    if profile_arg == "lookahead":
        lookahead = [0] * slices
        for record in read_records(fmt, path, spec):
            if record.kind in (Kind.EXECUTE, Kind.PRINT) and start <= record.timestamp < end:
                lookahead[(record.timestamp - start) * slices // (end - start)] += (
                    record.quantity)
    elif profile_arg != "causal":
        profile = read_profile(Path(profile_arg))
    return (Vwap(side, quantity, start, end, slices, limit, profile, lookahead), quantity,
            side)


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lobgw backtest`."""
    parser.add_argument("--data", type=Path, required=True, help="the market-data file")
    parser.add_argument("--format", required=True, choices=["csv", "lobster", "databento-mbo"])
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--strategy", required=True, choices=["twap", "vwap", "mm"])
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="strategy parameter (repeatable); see README for each strategy")
    parser.add_argument("--latency-us", type=int, default=0,
                        help="data-time delay before strategy actions reach the book")
    parser.add_argument("--initial-book", type=Path,
                        help="lobster: seed from row 1 of this orderbook file")
    parser.add_argument("--config", default=os.environ.get("LOBGW_CONFIG", "config.toml"))
    parser.add_argument("--tick-size", type=Decimal)
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--plot", type=Path, help="PNG report (needs matplotlib: lobgw[plot])")


def backtest_command(args: argparse.Namespace) -> int:
    """Run `lobgw backtest`."""
    path: Path = args.data
    spec = _data_and_spec("backtest", path, args)
    if spec is None:
        return 2
    try:
        params = parse_params(args.param)
        strategy, target, side = build_strategy(args.strategy, params, spec, args.format, path)
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
    seed = read_lobster_book_row(args.initial_book, 1, spec) if args.initial_book else None
    records = read_records(args.format, path, spec)
    try:
        result = asyncio.run(run_backtest(
            records, spec, strategy, latency_us=args.latency_us, seed_levels=seed,
            strategy_name=args.strategy, parameters=params, target=target, side=side,
            translator=Translator.for_format(args.format)))
    except BadRowError as error:
        print(f"lobgw backtest: bad row: {error.path}:{error.line}: {error.reason}",
              file=sys.stderr)
        return 1
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
    print(result.table())
    if args.plot is not None:
        from lobgw.sim.plot import plot_result

        plot_result(result, spec, args.plot)
        print(f"plot written to {args.plot}")
    return 0
