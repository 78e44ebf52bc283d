"""`lobgw serve`: run the gateway until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import msgspec

from lobgw.config import load_config
from lobgw.errors import ConfigError
from lobgw.gateway.logs import configure_logging
from lobgw.gateway.server import run
from lobgw.gateway.server import serve as serve_forever

DEFAULT_CONFIG = "config.toml"


def serve(args: argparse.Namespace) -> int:
    """Run the gateway (REST + WebSocket) until SIGINT or SIGTERM."""
    if not Path(args.config).exists():
        hint = ("`lobgw init` writes a starter config.toml here" if args.config == DEFAULT_CONFIG
                else "check the path, or `lobgw init DIR` writes a starter config")
        print(f"lobgw serve: no configuration at {args.config}: {hint} "
              "(or pass --config PATH)", file=sys.stderr)
        return 2
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
    configure_logging(config.logging.format, config.logging.level,
                      [account.api_key for account in config.accounts])
    return run(serve_forever(config, repair=args.repair))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lobgw serve`."""
    parser.add_argument("--config", default=os.environ.get("LOBGW_CONFIG", DEFAULT_CONFIG),
                        help="configuration file (default: $LOBGW_CONFIG or config.toml)")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.add_argument("--repair", action="store_true",
                        help="on journal corruption, keep what precedes it and "
                             "quarantine the rest instead of refusing to start")
