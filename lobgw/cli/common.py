"""Options and checks that `lobgw replay` and `lobgw backtest` share."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path

from lobgw.book.instrument import FeeSchedule, InstrumentSpec
from lobgw.config import load_config
from lobgw.errors import ConfigError
from lobgw.sim.records import natural_spec


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
    try:
        return natural_spec(fmt, symbol, path, tick_size)
    except ValueError:
        raise ConfigError(f"symbol {symbol!r} is not in the config; the {fmt} format needs "
                          "its tick and lot sizes (add it to config.toml)") from None


def configured_fees(symbol: str, config_path: str | None) -> FeeSchedule | None:
    """The `[[fees]]` schedule the config gives `symbol`, if any."""
    if config_path is None or not Path(config_path).exists():
        return None
    try:
        config = load_config(config_path)
    except ConfigError:
        return None
    return next((fees for fees in config.fees if fees.symbol == symbol), None)


def data_and_spec(command: str, path: Path, args: argparse.Namespace) -> InstrumentSpec | None:
    """The symbol's spec for a data file, or None after printing why not."""
    if not path.exists():
        print(f"lobgw {command}: {path}: no such file", file=sys.stderr)
        return None
    try:
        return resolve_spec(args.symbol, args.format, path, args.config, args.tick_size)
    except ConfigError as error:
        print(f"lobgw {command}: {error}", file=sys.stderr)
        return None
