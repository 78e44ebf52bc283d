"""Typed keys of the gateway application's state (`web.AppKey`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from lobgw.actors import Exchange
from lobgw.config import Config
from lobgw.gateway.connections import ConnectionGuard
from lobgw.gateway.marketdata import MarketDataHub
from lobgw.gateway.metrics import Metrics
from lobgw.gateway.orders import CancelAfter, OrderRegistry, OrderService
from lobgw.gateway.outbox import Flusher
from lobgw.gateway.ratelimit import RateLimiter


@dataclass
class GatewayState:
    """Mutable gateway-wide state."""

    ready: bool = False
    connections: set[Any] = field(default_factory=set)
    """Open WebSocket connections (lobgw.gateway.ws.Connection), closed on shutdown."""
    repair: bool = False
    """Start even if a journal is corrupt, quarantining what follows the damage."""
    recovery: asyncio.Task[None] | None = None
    """Journal recovery, running after the port is open (so /health answers meanwhile);
    `lobgw serve` exits 3 if it fails."""
    stopping: bool = False


CONFIG = web.AppKey("config", Config)
EXCHANGE = web.AppKey("exchange", Exchange)
REGISTRY = web.AppKey("registry", OrderRegistry)
SERVICE = web.AppKey("service", OrderService)
HUB = web.AppKey("hub", MarketDataHub)
METRICS = web.AppKey("metrics", Metrics)
ACCOUNTS = web.AppKey("accounts", dict[str, str])
KEY_LIMITER = web.AppKey("key_limiter", RateLimiter)
IP_LIMITER = web.AppKey("ip_limiter", RateLimiter)
STATE = web.AppKey("state", GatewayState)
FLUSHER = web.AppKey("flusher", Flusher)
CANCEL_AFTER = web.AppKey("cancel_after", CancelAfter)
GUARD = web.AppKey("guard", ConnectionGuard)
OPENAPI = web.AppKey[Callable[[], dict[str, Any]]]("openapi")
"""Builds (once) the OpenAPI document of the route table."""
