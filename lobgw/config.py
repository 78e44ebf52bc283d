"""Configuration: `config.toml` decoded and validated with msgspec, plus `LOBGW_` overrides.

Any value can be overridden from the environment: `LOBGW_SERVER__PORT=9000` sets
`server.port`; `__` separates table levels and a number indexes an array
(`LOBGW_ACCOUNTS__0__API_KEY=...`). Overrides are strings, converted to the field's type.
A bad file or override stops startup with a `ConfigError` naming the key and the reason.
"""

from __future__ import annotations

import datetime
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect

from lobgw.book.instrument import FeeSchedule, InstrumentSpec
from lobgw.errors import ConfigError

ENV_PREFIX = "LOBGW_"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every config table: unknown keys are an error, not silently ignored."""


class ServerConfig(Section, frozen=True):
    """Where to listen and how big a request may be."""

    host: str = "127.0.0.1"
    port: Port = 8080
    max_request_bytes: Positive = 64 * 1024
    max_ws_message_bytes: Positive = 64 * 1024
    ws_ping_seconds: PositiveFloat = 20.0
    """The server pings every WebSocket this often; a peer that has not answered (nor sent
    anything) within half of it is disconnected, and its cancel-on-disconnect orders go."""
    shutdown_timeout: PositiveFloat = 10.0
    max_connections_per_ip: Positive = 256
    """Open connections from one address (trusted proxies are exempt)."""
    header_timeout_seconds: PositiveFloat = 10.0
    """A new connection must deliver complete request headers within this."""
    keepalive_seconds: PositiveFloat = 15.0
    """An idle keep-alive connection (or one dribbling its next request) is closed after
    this."""
    body_timeout_seconds: PositiveFloat = 10.0
    """A request body must arrive within this (else 408 REQUEST_TIMEOUT)."""
    ws_auth_timeout_seconds: PositiveFloat = 10.0
    """A WebSocket that neither authenticates nor subscribes within this is closed (1008)."""
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    """Addresses of reverse proxies whose `X-Forwarded-For` names the client (for per-IP
    limits and logs); from anyone else the header is ignored."""
    """Seconds to wait for queues to drain and connections to close on shutdown."""


class AccountConfig(Section, frozen=True):
    """An account and the API key that acts for it. Keys are secrets: never logged."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    api_key: Annotated[str, msgspec.Meta(min_length=16)]


class RateLimitConfig(Section, frozen=True):
    """Token buckets: `rate` requests per second sustained, `burst` at once.

    Authenticated traffic (a valid API key) counts per account only; the per-IP bucket
    applies before authentication, so clients behind one proxy do not share a limit.
    """

    per_key_rate: PositiveFloat = 2_000.0
    per_key_burst: Positive = 4_000
    per_ip_rate: PositiveFloat = 5_000.0
    per_ip_burst: Positive = 10_000
    ws_violations_before_close: Positive = 50
    """A WebSocket refused this many times within `ws_violation_window_seconds` (however
    many messages got through in between) is closed with 1008."""
    ws_violation_window_seconds: PositiveFloat = 10.0


class RuntimeConfig(Section, frozen=True):
    """Queue sizes and batching of the symbol actors and the market-data fan-out."""

    command_queue_size: Positive = 16_384
    batch_size: Positive = 512
    slow_consumer_bytes: Positive = 4 << 20
    """A WebSocket that stays more than this many bytes behind (queued plus unsent in its
    socket) for `slow_consumer_seconds` is closed as a slow consumer (4008)."""
    slow_consumer_seconds: PositiveFloat = 5.0
    max_outbox_bytes: Positive = 64 << 20
    """A WebSocket this far behind is closed at once, whatever the time."""
    slow_consumer_close_seconds: PositiveFloat = 2.0
    """How long a closed slow consumer gets to take its close frame before the connection is
    cut (so it stops holding kernel buffers)."""
    market_data_flush_ms: Annotated[float, msgspec.Meta(ge=0, le=100)] = 5.0
    """Market data waits up to this long so one send carries many messages (0: no wait)."""
    heartbeat_seconds: PositiveFloat = 5.0
    """A subscribed channel with no messages for this long gets a heartbeat."""
    recent_trades: Positive = 1_000
    """Public trades per symbol kept for `/trades` (and in snapshots, across restarts)."""
    max_batch_requests: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    """Requests in one batch entry (`op: batch`, `POST /api/v1/orders/batch`)."""


class MarketDataConfig(Section, frozen=True):
    """Who may see what: the order-by-order (L3) channel is for the accounts listed here
    only (venues restrict it; it shows every order's id and size)."""

    l3_accounts: list[str] = msgspec.field(default_factory=list)


_TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")


class SessionConfig(Section, frozen=True):
    """A symbol's trading day: DAY orders expire at `end`, a local time of day in
    `timezone` (an IANA name), the next time it comes after the order arrives."""

    symbol: str
    end: str
    """HH:MM or HH:MM:SS."""
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not _TIME_OF_DAY.match(self.end):
            raise ValueError(f"session end {self.end!r} of {self.symbol} is not HH:MM[:SS]")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r} for the session of "
                             f"{self.symbol}") from None

    def next_end(self, now_ns: int) -> int:
        """The first session end after `now_ns` (Unix ns), in Unix ns."""
        match = _TIME_OF_DAY.match(self.end)
        assert match is not None
        zone = zoneinfo.ZoneInfo(self.timezone)
        now = datetime.datetime.fromtimestamp(now_ns / 1e9, zone)
        end = datetime.time(int(match[1]), int(match[2]), int(match[3] or 0))
        day = now.date()
        while True:
            candidate = datetime.datetime.combine(day, end, zone)
            ns = int(candidate.timestamp()) * 1_000_000_000
            if ns > now_ns:
                return ns
            day += datetime.timedelta(days=1)


class JournalConfig(Section, frozen=True):
    """Durability: every command journaled before it is acknowledged; periodic snapshots."""

    enabled: bool = True
    directory: str = "./data"
    fsync: Literal["batch", "always", "off"] = "batch"
    """batch: one fsync per actor batch (group commit); always: one per request; off: none
    (survives a process crash, not a machine crash)."""
    snapshot_every_commands: Positive = 100_000
    snapshot_every_seconds: PositiveFloat = 60.0


class HistoryConfig(Section, frozen=True):
    """How long finished orders and executions stay queryable (and client order ids stay
    taken): per symbol, the newest `orders_kept` finished orders and `executions_kept`
    execution reports per account, none older than `max_age_seconds` (0: no age limit).
    Kept in snapshots and rebuilt from the journal, so restarts keep them."""

    orders_kept: Positive = 100_000
    executions_kept: Positive = 100_000
    max_age_seconds: Annotated[float, msgspec.Meta(ge=0)] = 7 * 24 * 3600.0


class LoggingConfig(Section, frozen=True):
    """Log format and level; one line per request with its timing."""

    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True


class CorsConfig(Section, frozen=True):
    """Cross-origin access for browser clients; empty `allow_origins` disables CORS."""

    allow_origins: list[str] = msgspec.field(default_factory=list)
    allow_headers: list[str] = msgspec.field(
        default_factory=lambda: ["Content-Type", "X-API-Key"])
    max_age: int = 600


class Config(Section, frozen=True):
    """The whole configuration."""

    symbols: list[InstrumentSpec]
    accounts: list[AccountConfig] = msgspec.field(default_factory=list)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    rate_limits: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    journal: JournalConfig = msgspec.field(default_factory=JournalConfig)
    history: HistoryConfig = msgspec.field(default_factory=HistoryConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    cors: CorsConfig = msgspec.field(default_factory=CorsConfig)
    fees: list[FeeSchedule] = msgspec.field(default_factory=list)
    """Per-symbol fee schedules (backtests charge them; `[[fees]]` with `symbol`)."""
    sessions: list[SessionConfig] = msgspec.field(default_factory=list)
    """Per-symbol session ends for DAY orders (`[[sessions]]` with `symbol`); a symbol
    without one refuses DAY orders."""
    market_data: MarketDataConfig = msgspec.field(default_factory=MarketDataConfig)

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("at least one symbol is required")
        seen: set[str] = set()
        for spec in self.symbols:
            if spec.symbol in seen:
                raise ValueError(f"symbol {spec.symbol!r} is configured twice")
            seen.add(spec.symbol)
        names: set[str] = set()
        keys: set[str] = set()
        for account in self.accounts:
            if account.name in names:
                raise ValueError(f"account {account.name!r} is configured twice")
            if account.api_key in keys:
                raise ValueError(f"account {account.name!r} reuses another account's api_key")
            names.add(account.name)
            keys.add(account.api_key)
        days: set[str] = set()
        for session in self.sessions:
            if session.symbol not in seen:
                raise ValueError(f"the session of {session.symbol!r} names no configured "
                                 "symbol")
            if session.symbol in days:
                raise ValueError(f"symbol {session.symbol!r} has two sessions")
            days.add(session.symbol)
        for name in self.market_data.l3_accounts:
            if name not in names:
                raise ValueError(f"market_data.l3_accounts names no account {name!r}")


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate; raise ConfigError naming the key."""
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    overrides = apply_env_overrides(data, os.environ if environ is None else environ)
    try:
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigError(_describe(error, path, overrides)) from None


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Write every `LOBGW_A__B=value` into `data`; return {dotted key: variable name}."""
    applied: dict[str, str] = {}
    for variable, value in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or variable == ENV_PREFIX + "CONFIG":
            continue
        parts = [part.lower() for part in variable[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise ConfigError(f"{variable}: empty key segment")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, variable, parts[depth + 1])
        _assign(node, parts[-1], _parse_list(value) if _is_list(parts) else value, variable)
        applied[".".join(parts)] = variable
    return applied


def _child(node: Any, part: str, variable: str, next_part: str) -> Any:
    if isinstance(node, list):
        index = _index(part, node, variable)
        return node[index]
    if not isinstance(node, dict):
        raise ConfigError(f"{variable}: {part!r} is not a table")
    if part not in node:
        node[part] = [] if next_part.isdigit() else {}
    return node[part]


def _assign(node: Any, part: str, value: str | list[str], variable: str) -> None:
    if isinstance(node, list):
        node[_index(part, node, variable)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"{variable}: cannot set {part!r} inside a value")


def _index(part: str, node: list[Any], variable: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{variable}: {part!r} is not an index of an existing array entry")
    return int(part)


def _parse_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _is_list(parts: list[str]) -> bool:
    """Whether the config field at `parts` is an array (its override is comma-separated)."""
    info: Any = msgspec.inspect.type_info(Config)
    for part in parts:
        if isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
            continue
        if not isinstance(info, msgspec.inspect.StructType):
            return False
        fields = {field.name: field.type for field in info.fields}
        if part not in fields:
            return False
        info = fields[part]
    return isinstance(info, msgspec.inspect.ListType)


def _describe(error: msgspec.ValidationError, path: Path, overrides: dict[str, str]) -> str:
    """Turn msgspec's `... - at `$.server.port`` into `server.port: ...` with its source."""
    message = str(error)
    reason, _, where = message.rpartition(" - at `")
    if not where:
        return f"{path}: {message}"
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    key = key.replace("[", ".").replace("]", "")
    source = f"environment variable {overrides[key]}" if key in overrides else str(path)
    return f"{key}: {reason} (from {source})"
