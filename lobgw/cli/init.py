"""`lobgw init [DIR]`: write a commented starter `config.toml` with fresh API keys.

A wheel install has no config file; this gives a new user one to edit, with keys nobody else
has (the repository's demo keys are public).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

STARTER = '''\
# lobgw configuration, written by `lobgw init`. Start it with:
#     lobgw serve --config {path}
# Decimals are strings so that nothing passes through a float. Every key can be overridden
# from the environment: LOBGW_SERVER__PORT=9000, LOBGW_ACCOUNTS__0__API_KEY=... (see
# PRODUCTION.md for all of them).

# One table per tradable symbol: tick and lot size; optional min/max quantity and price band.
[[symbols]]
symbol = "BTC-USD"
tick_size = "0.01"
lot_size = "0.0001"
min_quantity = "0.0001"
max_quantity = "100"

[[symbols]]
symbol = "ETH-USD"
tick_size = "0.01"
lot_size = "0.001"
max_quantity = "1000"

# Accounts and the API keys that act for them. These keys were generated for this file:
# keep them secret (they are never logged or echoed), or move them to the environment.
[[accounts]]
name = "alice"
api_key = "{alice_key}"

[[accounts]]
name = "bob"
api_key = "{bob_key}"

[server]
host = "127.0.0.1"      # 0.0.0.0 to listen on every interface (put TLS in front of it)
port = 8080

# The edge: deadlines so that idle or half-open connections cannot pile up.
max_connections_per_ip = 256    # open connections per client address (trusted proxies exempt)
header_timeout_seconds = 10     # complete request headers within this, or the connection goes
keepalive_seconds = 15          # an idle keep-alive connection is closed after this
body_timeout_seconds = 10       # a request body that does not arrive: 408 REQUEST_TIMEOUT
ws_auth_timeout_seconds = 10    # a WebSocket that neither authenticates nor subscribes: 1008
ws_ping_seconds = 20            # server pings; no pong within half of it disconnects
trusted_proxies = []            # reverse proxies whose X-Forwarded-For names the client

# Token buckets: per account once authenticated, per client address before.
[rate_limits]
per_key_rate = 2000
per_key_burst = 4000
per_ip_rate = 5000
per_ip_burst = 10000
ws_violations_before_close = 50   # refusals within the window that close a WebSocket (1008)
ws_violation_window_seconds = 10

# Subscribers are judged by how far behind they are, not by the size of one burst.
[runtime]
slow_consumer_bytes = 4194304     # unread bytes (queued and in the socket) that make a
slow_consumer_seconds = 5         # subscriber slow when it stays behind this long (4008),
max_outbox_bytes = 67108864       # or at once when this far behind
heartbeat_seconds = 5             # idle connections get a heartbeat this often

[logging]
format = "text"         # text | json
level = "INFO"

# Every command is journaled before it is acknowledged; a restart rebuilds the books.
[journal]
enabled = true
directory = "{data}"
fsync = "batch"         # batch (group commit) | always | off
snapshot_every_commands = 100000
snapshot_every_seconds = 60

# How long finished orders and executions stay queryable (and client order ids stay taken),
# per symbol; kept across restarts.
[history]
orders_kept = 100000
executions_kept = 100000          # per account
max_age_seconds = 604800          # 7 days of event time (0: no age limit)
'''


def init(args: argparse.Namespace) -> int:
    """Write DIR/config.toml (refusing to overwrite one without --force)."""
    directory: Path = args.directory
    path = directory / "config.toml"
    if path.exists() and not args.force:
        print(f"lobgw init: {path} already exists (use --force to overwrite it)",
              file=sys.stderr)
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER.format(path=path, alice_key=_key("alice"), bob_key=_key("bob"),
                                   data=(directory.resolve() / "data").as_posix()),
                    encoding="utf-8")
    path.chmod(0o600)  # it holds secrets
    print(f"wrote {path} (two accounts with fresh API keys); start the gateway with:\n"
          f"    lobgw serve --config {path}")
    return 0


def _key(account: str) -> str:
    return f"{account}-{secrets.token_urlsafe(24)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lobgw init`."""
    parser.add_argument("directory", nargs="?", type=Path, default=Path("."),
                        help="where to write config.toml (default: here)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
