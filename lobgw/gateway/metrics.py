"""Prometheus metrics (aioprometheus). Hot paths add to plain counters; values that already
exist elsewhere (engine counters, queue depths, connection counts) are read at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from aioprometheus.histogram import Histogram as HistogramValue
from aioprometheus.renderer import render

from lobgw.actors import BookReader, Exchange
from lobgw.book.events import Event, OrderRejected

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   1.0)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class Metrics:
    """Every lobgw metric, in its own registry."""

    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        self.orders_received = Counter("lobgw_orders_received_total",
                                       "New orders received by order entry", registry=r)
        self.orders_accepted = Counter("lobgw_orders_accepted_total",
                                       "New orders accepted by the engine", registry=r)
        self.orders_rejected = Counter("lobgw_orders_rejected_total",
                                       "Commands rejected by the engine, by reason", registry=r)
        self.trades = Counter("lobgw_trades_total", "Trades executed", registry=r)
        self.traded_quantity = Counter("lobgw_traded_quantity_lots_total",
                                       "Quantity traded, in lots", registry=r)
        self.queue_depth = Gauge("lobgw_actor_queue_depth", "Requests waiting in an actor queue",
                                 registry=r)
        self.command_latency = Histogram(
            "lobgw_command_latency_seconds",
            "Seconds from a request entering an actor queue to its events being published",
            registry=r, buckets=LATENCY_BUCKETS)
        self.http_duration = Histogram("lobgw_http_request_duration_seconds",
                                       "HTTP request duration by route and status",
                                       registry=r, buckets=HTTP_BUCKETS)
        self.ws_connections = Gauge("lobgw_ws_connections", "Open WebSocket connections",
                                    registry=r)
        self.ws_messages_sent = Counter("lobgw_ws_messages_sent_total",
                                        "WebSocket messages written", registry=r)
        self.ws_messages_dropped = Counter("lobgw_ws_messages_dropped_total",
                                           "Messages discarded for slow consumers", registry=r)
        self.ws_slow_disconnects = Counter("lobgw_ws_slow_consumer_disconnects_total",
                                           "Connections closed as slow consumers", registry=r)
        self.rate_limited = Counter("lobgw_rate_limited_total", "Requests refused by rate limits",
                                    registry=r)
        self.rate_limited.set({}, 0)
        # Hot-path tallies: plain numbers, copied into the collectors at every scrape.
        self.messages_sent = 0
        self.messages_dropped = 0
        self.slow_disconnects = 0
        self.received: dict[str, int] = {}
        """New orders that reached order entry, per symbol."""
        self._latency: dict[str, FastHistogram] = {}
        self._collectors: list[Callable[[], None]] = []

    def observe_latency(self, symbol: str, seconds: float) -> None:
        """Actor hook: one request's enqueue-to-published latency."""
        histogram = self._latency.get(symbol)
        if histogram is None:
            histogram = self._latency[symbol] = FastHistogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def _collect_tallies(self) -> None:
        self.ws_messages_sent.set({}, self.messages_sent)
        self.ws_messages_dropped.set({}, self.messages_dropped)
        self.ws_slow_disconnects.set({}, self.slow_disconnects)
        for symbol, histogram in self._latency.items():
            self.command_latency.set_value({"symbol": symbol}, histogram.export())

    def on_batch(self, symbol: str, events: list[Event], book: BookReader) -> None:
        """Actor listener: count rejections by reason."""
        for event in events:
            if event.__class__ is OrderRejected:
                self.orders_rejected.inc({"symbol": symbol,
                                          "reason": event.reason.value})

    def watch_exchange(self, exchange: Exchange) -> None:
        """Read engine counters and queue depths at every scrape."""
        def collect() -> None:
            for symbol, actor in exchange.actors.items():
                labels = {"symbol": symbol}
                counters = actor.engine.counters()
                self.orders_received.set(labels, self.received.get(symbol, 0))
                self.orders_accepted.set(labels, counters.orders)
                self.trades.set(labels, counters.trades)
                self.traded_quantity.set(labels, counters.volume)
                self.queue_depth.set(labels, actor.queue_depth)
        self._collectors.append(collect)

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Run `collect` before every scrape."""
        self._collectors.append(collect)

    def render(self, accepts: Sequence[str]) -> tuple[bytes, dict[str, str]]:
        """The exposition body and headers for a scrape."""
        for collect in self._collectors:
            collect()
        self._collect_tallies()
        return render(self.registry, list(accepts))


class FastHistogram:
    """Bucket counts kept with one bisect per sample; exported to aioprometheus at scrape.

    aioprometheus resolves label dicts on every observation, which costs more than the
    command being measured; this keeps the hot path to a few operations.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one sample (le semantics: a value equal to a bound falls in that bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def export(self) -> HistogramValue:
        """The cumulative aioprometheus histogram value."""
        value = HistogramValue(*self.bounds)
        cumulative = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            cumulative += count
            value.buckets[bound] = cumulative
        value.observations = cumulative
        value.sum = self.total
        return value
