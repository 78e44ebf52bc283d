"""Prometheus metrics (aioprometheus). Hot paths add to plain counters; values that already
exist elsewhere (engine counters, queue depths, connection counts) are read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from aioprometheus.histogram import Histogram as HistogramValue
from aioprometheus.renderer import render

from lobgw.actors import BookReader, Exchange
from lobgw.actors.journal import FSYNC_BUCKETS, SNAPSHOT_BUCKETS
from lobgw.book.events import Event, OrderRejected
from lobgw.histogram import FastHistogram

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
        self.journal_bytes = Counter("lobgw_journal_bytes_total", "Bytes written to journals",
                                     registry=r)
        self.journal_records = Counter("lobgw_journal_records_total", "Journal records written",
                                       registry=r)
        self.journal_available = Gauge("lobgw_journal_available",
                                       "1 while a symbol's journal can be written", registry=r)
        self.fsync_latency = Histogram("lobgw_journal_fsync_seconds", "fsync duration",
                                       registry=r, buckets=FSYNC_BUCKETS)
        self.snapshot_duration = Histogram(
            "lobgw_snapshot_seconds", "Snapshots: phase=pause is how long one held its symbol "
            "(rotate and fork), phase=write until its file was durable", registry=r,
            buckets=SNAPSHOT_BUCKETS)
        self.snapshot_failures = Counter("lobgw_snapshot_failures_total",
                                         "Snapshots that could not be written", registry=r)
        self.recovery_seconds = Gauge("lobgw_recovery_seconds",
                                      "Time the last startup spent recovering a symbol",
                                      registry=r)
        self.recovery_records = Gauge("lobgw_recovery_records",
                                      "Journal records replayed by the last startup", registry=r)
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
            self.command_latency.set_value({"symbol": symbol}, export(histogram))

    def on_batch(self, symbol: str, events: list[Event], book: BookReader) -> None:
        """Actor listener: count rejections by reason."""
        for event in events:
            if event.__class__ is OrderRejected:
                self.orders_rejected.inc({"symbol": symbol,
                                          "reason": event.reason.value})

    def watch_exchange(self, exchange: Exchange) -> None:
        """Read the actors' counters (as of their last batch) and queue depths at every
        scrape."""
        def collect() -> None:
            for symbol, actor in exchange.actors.items():
                labels = {"symbol": symbol}
                journal = actor.journal
                if journal is not None:
                    self.journal_bytes.set(labels, journal.bytes_written)
                    self.journal_records.set(labels, journal.records_written)
                    self.journal_available.set(labels, int(actor.journal_available))
                    self.fsync_latency.set_value(labels, export(journal.fsync_seconds))
                    for phase, histogram in (("pause", actor.snapshot_pause),
                                             ("write", actor.snapshot_write)):
                        self.snapshot_duration.set_value({**labels, "phase": phase},
                                                         export(histogram))
                    self.snapshot_failures.set(labels, actor.snapshot_failures)
                recovery = exchange.recoveries.get(symbol)
                if recovery is not None:
                    self.recovery_seconds.set(labels, recovery.seconds)
                    self.recovery_records.set(labels, recovery.records)
                counters = actor.counters
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


def export(histogram: FastHistogram) -> HistogramValue:
    """A FastHistogram as the cumulative aioprometheus histogram value."""
    value = HistogramValue(*histogram.bounds)
    total = 0
    for bound, cumulative in histogram.cumulative():
        value.buckets[bound] = cumulative
        total = cumulative
    value.observations = total
    value.sum = histogram.total
    return value
