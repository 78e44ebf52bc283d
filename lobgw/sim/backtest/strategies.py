"""Execution and market-making strategies for backtests.

All three decide in data time from the book view they are given and act only through
`place` / `amend` / `cancel`, so they run unchanged against any replayed data.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side, TimeInForce
from lobgw.orders import Fill
from lobgw.sim.backtest.core import BaseStrategy, BookView
from lobgw.sim.backtest.results import NS
from lobgw.sim.records import Kind, PathLike, data_time_range, read_records


class ScheduledExecution(BaseStrategy):
    """Buy or sell `quantity` between `start` and `end` following a target schedule.

    At each slice boundary the strategy cancels its working order and sends a new limit order
    for everything the schedule says should be done by now but is not (so unfilled quantity is
    caught up in later slices), priced at the far touch (it crosses the spread) but never
    beyond `limit_price` (protection: beyond it the order rests at the limit). At `end` the
    leftover is cancelled and reported as the shortfall.
    """

    def __init__(self, side: Side, quantity: int, start: int, end: int, slices: int,
                 limit_price: int | None = None, max_participation: float | None = None,
                 catch_up: bool = True) -> None:
        super().__init__()
        if quantity <= 0 or slices <= 0 or end <= start:
            raise ValueError("quantity and slices must be positive and end after start")
        if max_participation is not None and not 0 < max_participation <= 1:
            raise ValueError(f"max_participation={max_participation}: must be in (0, 1]")
        self.max_participation = max_participation
        self.catch_up = catch_up
        self.market_volume = 0
        """Market volume traded in the window so far (what the participation cap allows)."""
        self.catching_up = False
        self.caught_up = 0
        """Quantity sent in the final catch-up order at `end`."""
        self.side = side
        self.quantity = quantity
        self.start = start
        self.end = end
        self.slices = slices
        self.limit_price = limit_price
        self.filled = 0
        self.slice_index = -1
        self.working: int | None = None
        self.finished = False
        self.shortfall = 0

    def target(self, now: int, slice_index: int) -> int:
        """Cumulative quantity the schedule wants done by the end of `slice_index`."""
        return self.quantity * (slice_index + 1) // self.slices

    def on_market_data(self, view: BookView) -> None:
        """Act at slice boundaries; at the end of the window, catch up what is left."""
        now = view.timestamp
        if self.catching_up:
            if not self.open_orders and not self.orders.pending:  # the cancels arrived
                self._send_catch_up(view)
            return
        if self.finished or now < self.start:
            return
        if now >= self.end:
            self._finish()
            self.catching_up = self.catch_up and self._left() > 0
            return
        index = min(self.slices - 1, (now - self.start) * self.slices // (self.end - self.start))
        if index == self.slice_index:
            return
        self.slice_index = index
        if self.working is not None:
            self.cancel(self.working)
            self.working = None
        wanted = min(self.min_allowed(), self.target(now, index)) - self.filled
        if wanted <= 0:
            return
        price = self._price(view)
        if price is None:
            return  # nothing to price against and no limit: wait for the next slice
        self.working = self.place(self.side, wanted, price, TimeInForce.GTC)

    def min_allowed(self) -> int:
        """The most the participation cap allows done by now (all of it without a cap)."""
        if self.max_participation is None:
            return self.quantity
        return min(self.quantity, math.floor(self.max_participation * self.market_volume))

    def on_market_trade(self, timestamp: int, price: int, quantity: int) -> None:
        """Count the window's market volume (for the participation cap)."""
        if self.start <= timestamp < self.end:
            self.market_volume += quantity

    def _price(self, view: BookView) -> int | None:
        """The far touch, never beyond the limit price."""
        price = view.ask if self.side is Side.BUY else view.bid
        if price is None or (self.limit_price is not None and
                             (price > self.limit_price if self.side is Side.BUY
                              else price < self.limit_price)):
            price = self.limit_price
        return price

    def on_fill(self, fill: Fill) -> None:
        """Count what is done."""
        self.filled += fill.quantity
        if fill.order_id == self.working and fill.order_id not in self.open_orders:
            self.working = None

    def on_end(self, view: BookView) -> None:
        """The data ended: the end of the window (no more data can fill the working order,
        so the catch-up goes straight after its cancel)."""
        was_catching_up = self.catching_up
        self._finish()
        if self.catch_up and (was_catching_up or not self.caught_up) and self._left() > 0:
            self._send_catch_up(view)

    def _left(self) -> int:
        return min(self.quantity, self.min_allowed()) - self.filled

    def _send_catch_up(self, view: BookView) -> None:
        """One immediate-or-cancel order for what is left: a market order, or with a limit
        price a limit order there (it takes every level up to the limit, no further)."""
        self.catching_up = False
        left = self._left()
        if left > 0:
            self.caught_up = left
            self.place(self.side, left, self.limit_price, TimeInForce.IOC)

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.cancel_all()
            self.working = None

    def is_done(self) -> bool:
        """Done once the window closed (and the catch-up was sent)."""
        return self.finished and not self.catching_up

    def describe(self) -> dict[str, object]:
        """Target, shortfall, catch-up and schedule facts; why it fell short, if it did."""
        self.shortfall = self.quantity - self.filled
        reason = None
        if self.shortfall > 0:
            reason = ("participation cap" if self.min_allowed() < self.quantity else
                      "limit price" if self.limit_price is not None else "no liquidity")
        return {"target_quantity": self.quantity, "shortfall_quantity": self.shortfall,
                "slices": self.slices, "window_ns": [self.start, self.end],
                "finished_on_time": self.filled >= self.quantity,
                "catch_up_quantity": self.caught_up, "max_participation": self.max_participation,
                "incomplete_reason": reason}


class Twap(ScheduledExecution):
    """Equal slices in time."""

    name = "twap"


RECENT_WEIGHT = 0.5
"""How much the latest slice counts in the causal VWAP's expectation of the next ones."""


SESSION_NS = (34_200 * NS, 57_600 * NS)
"""The US equity session, 09:30 to 16:00, in ns after midnight (LOBSTER's clock)."""


def u_shape(fraction: float) -> float:
    """The default intraday volume profile: weight 1 mid-session rising to 4 at the open
    and the close, `1 + 3 (2x - 1)^2` for the fraction `x` of the session elapsed. A
    documented approximation of US equity volume (heavy open, heavier close), used when
    no history is given."""
    x = min(1.0, max(0.0, fraction))
    return 1 + 3 * (2 * x - 1) ** 2


class Vwap(ScheduledExecution):
    """Slices that follow a volume profile.

    The profile is, in order of preference: given (one weight per slice, from a file made
    from the history, e.g. previous days); the intraday U-shape (`u_shape`, the default),
    over the session when the data's clock is time after midnight (`session`) and over the
    window otherwise; or estimated from the data. The causal estimate (`estimate="causal"`)
    knows only the volume seen so far and expects each slice still to come to trade like the
    recent ones. With look-ahead volumes it uses the data's actual volume per slice, which a
    real trader could not know; results computed that way are labelled `profile: look-ahead`.
    Like TWAP it catches up at `end` and honours `max_participation`.
    """

    name = "vwap"

    def __init__(self, side: Side, quantity: int, start: int, end: int, slices: int,
                 limit_price: int | None = None, profile: list[float] | None = None,
                 lookahead_volumes: list[int] | None = None, *, estimate: str = "u-shape",
                 session: tuple[int, int] | None = None,
                 max_participation: float | None = None, catch_up: bool = True) -> None:
        super().__init__(side, quantity, start, end, slices, limit_price, max_participation,
                         catch_up)
        if profile is not None and len(profile) != slices:
            raise ValueError(f"the profile has {len(profile)} weights for {slices} slices")
        if lookahead_volumes is not None and len(lookahead_volumes) != slices:
            raise ValueError("look-ahead volumes must have one entry per slice")
        if estimate not in ("u-shape", "causal"):
            raise ValueError(f"estimate={estimate!r}: not one of u-shape, causal")
        self.profile = profile
        self.lookahead = lookahead_volumes
        self.volume_by_slice = [0] * slices
        self.estimate = estimate
        begin, finish = session if session is not None else (start, end)
        width = (end - start) / slices
        self.u_weights = [u_shape((start + (k + 0.5) * width - begin) / (finish - begin))
                          for k in range(slices)]
        self.profile_kind = ("file" if profile is not None else
                             "look-ahead" if lookahead_volumes is not None else estimate)

    def on_market_trade(self, timestamp: int, price: int, quantity: int) -> None:
        """Count market volume per slice (what the causal profile learns from)."""
        super().on_market_trade(timestamp, price, quantity)
        if self.start <= timestamp < self.end:
            index = (timestamp - self.start) * self.slices // (self.end - self.start)
            self.volume_by_slice[index] += quantity

    def target(self, now: int, slice_index: int) -> int:
        """Cumulative target by the end of `slice_index` under the chosen profile."""
        if self.profile is not None:
            weights = self.profile
        elif self.lookahead is not None:
            weights = [float(v) for v in self.lookahead]
        elif self.estimate == "u-shape":
            weights = self.u_weights
        else:
            seen = self.volume_by_slice[:slice_index]
            if not any(seen):
                return super().target(now, slice_index)
            expected = float(seen[0])
            for volume in seen[1:]:
                expected = RECENT_WEIGHT * volume + (1 - RECENT_WEIGHT) * expected
            weights = [float(v) for v in seen] + [expected] * (self.slices - len(seen))
        total = sum(weights)
        if total <= 0:
            return super().target(now, slice_index)
        done = sum(weights[:slice_index + 1])
        return math.floor(self.quantity * done / total + 1e-9)

    def describe(self) -> dict[str, object]:
        """Adds the profile used."""
        return {**super().describe(), "profile": self.profile_kind}


def read_profile(path: Path) -> list[float]:
    """A volume profile file: one weight per line (or `bin,weight`), in slice order."""
    weights = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            weights.append(float(line.split(",")[-1]))
    return weights


class MarketMaker(BaseStrategy):
    """Two-sided quotes around the mid (or microprice), skewed by inventory.

    The reservation price is the reference price minus `skew` ticks per lot of inventory (an
    Avellaneda-Stoikov-style shift: long inventory lowers both quotes so sells get more likely).
    Quotes sit `half_spread` ticks either side of it, never crossing the book (post-only), for
    `size` lots each (icebergs showing `display` lots, if given). A side is not quoted while
    a full fill of it would take inventory past `max_inventory`. Quotes are moved when the
    book changes, at most once per `min_requote_ns`.
    """

    name = "mm"

    def __init__(self, size: int, half_spread: int, skew: float, max_inventory: int,
                 min_requote_ns: int, reference: str = "mid", display: int | None = None
                 ) -> None:
        super().__init__()
        if display is not None and not 0 < display <= size:
            raise ValueError("display must be positive and at most size")
        self.display = display
        """Quote as icebergs showing this much (None: show the whole size)."""
        if size <= 0 or half_spread < 1 or max_inventory <= 0:
            raise ValueError("size, half_spread and max_inventory must be positive")
        if reference not in ("mid", "micro"):
            raise ValueError("reference must be mid or micro")
        self.size = size
        self.half_spread = half_spread
        self.skew = skew
        self.max_inventory = max_inventory
        self.min_requote_ns = min_requote_ns
        self.reference = reference
        self.quotes: dict[Side, int | None] = {Side.BUY: None, Side.SELL: None}
        self.last_quote_time = -(1 << 62)
        self.last_book: tuple[int | None, int | None] = (None, None)
        self.requotes = 0
        self.max_abs_inventory = 0

    def on_market_data(self, view: BookView) -> None:
        """Requote when the touch moved (rate-limited)."""
        book = (view.bid, view.ask)
        if book == self.last_book or view.timestamp - self.last_quote_time < self.min_requote_ns:
            return
        reference = view.microprice if self.reference == "micro" else view.mid
        if reference is None or view.bid is None or view.ask is None:
            return
        self.last_book = book
        self.last_quote_time = view.timestamp
        reservation = reference - self.skew * self.position
        bid = min(math.floor(reservation - self.half_spread), view.ask - 1)
        ask = max(math.ceil(reservation + self.half_spread), view.bid + 1)
        # Hard limits: never quote a side whose full fill would pass the inventory limit.
        self._quote(Side.BUY, bid if self.position + self.size <= self.max_inventory else None)
        self._quote(Side.SELL, ask if self.position - self.size >= -self.max_inventory
                    else None)
        self.requotes += 1

    def _quote(self, side: Side, price: int | None) -> None:
        current = self.quotes[side]
        order = self.orders.get(current) if current is not None else None
        if order is None:
            self.quotes[side] = current = None
        if price is None or price <= 0:
            if current is not None:
                self.cancel(current)
                self.quotes[side] = None
            return
        if current is None:
            self.quotes[side] = self.place(side, self.size, price, post_only=True,
                                           display_quantity=self.display)
        elif order is not None and order.price != price:
            self.amend(current, price=price)

    def on_fill(self, fill: Fill) -> None:
        """Track the largest inventory reached."""
        self.max_abs_inventory = max(self.max_abs_inventory, abs(self.position))

    def on_end(self, view: BookView) -> None:
        """Pull the quotes."""
        self.cancel_all()

    def describe(self) -> dict[str, object]:
        """Quoting facts."""
        return {"requotes": self.requotes, "max_abs_inventory": self.max_abs_inventory,
                "reference": self.reference}


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`k=v` pairs; a pair without `=` is an error naming it."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: expected key=value")
        params[key.strip()] = value.strip()
    return params


def _decimal(params: dict[str, str], key: str, default: Decimal,
             minimum: Decimal | None = None) -> Decimal:
    """Parameter `key` as a decimal (or `default`), naming it and the value when it is not."""
    text = params.get(key)
    if text is None:
        return default
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ValueError(f"{key}={text!r}: not a decimal number (for example 100 or 0.5)")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}={text}: must be at least {minimum}")
    return value


def _integer(params: dict[str, str], key: str, default: int, minimum: int) -> int:
    """Parameter `key` as a whole number of at least `minimum` (or `default`)."""
    text = params.get(key)
    if text is None:
        return default
    if not text.strip().lstrip("-").isdigit() or not text.strip().isascii():
        raise ValueError(f"{key}={text!r}: not a whole number")
    value = int(text)
    if value < minimum:
        raise ValueError(f"{key}={text}: must be at least {minimum}")
    return value


def _choice(params: dict[str, str], key: str, default: str, allowed: tuple[str, ...],
            upper: bool = False) -> str:
    """Parameter `key` as one of `allowed` (or `default`)."""
    text = params.get(key, default)
    value = text.upper() if upper else text
    if value not in allowed:
        raise ValueError(f"{key}={text!r}: not one of {', '.join(allowed)}")
    return value


DAY_NS = 86_400 * NS


def history_profile(paths: list[PathLike], fmt: str, spec: InstrumentSpec, start: int,
                    end: int, slices: int) -> list[float]:
    """Each slice's share of the traded volume at the same time of day on other days' data
    (`paths`, the same format): what a desk's VWAP profile is made from."""
    volumes = [0.0] * slices
    first, last = start % DAY_NS, end % DAY_NS
    if last <= first:
        raise ValueError("the window must lie within one day to use history")
    for path in paths:
        try:
            for record in read_records(fmt, path, spec):
                if record.kind in (Kind.EXECUTE, Kind.PRINT):
                    moment = record.timestamp % DAY_NS
                    if first <= moment < last:
                        volumes[(moment - first) * slices // (last - first)] += record.quantity
        except OSError as error:
            raise ValueError(f"history {path}: {error.strerror or error}") from None
    if not any(volumes):
        raise ValueError("the history has no trades in the window's time of day")
    return volumes


def build_strategy(name: str, params: dict[str, str], spec: InstrumentSpec, fmt: str,
                   path: PathLike, history: list[PathLike] | None = None
                   ) -> tuple[BaseStrategy, int | None, Side | None]:
    """The strategy for `--strategy` with its parameters (decimals in the symbol's units);
    `history`: other days' data files, for VWAP's profile."""
    known = {"twap": {"side", "quantity", "slices", "start", "end", "limit",
                      "max_participation", "catch_up"},
             "vwap": {"side", "quantity", "slices", "start", "end", "limit", "profile",
                      "max_participation", "catch_up"},
             "mm": {"size", "half_spread", "skew", "max_inventory", "min_requote_ms",
                    "reference", "display"}}
    if name not in known:
        raise ValueError(f"unknown strategy {name!r}; choose twap, vwap or mm")
    unknown = set(params) - known[name]
    if unknown:
        raise ValueError(f"unknown parameter(s) for {name}: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(known[name]))}")
    if name == "mm":
        return MarketMaker(
            size=spec.quantity_to_lots(_decimal(params, "size", spec.lot_size), "size"),
            half_spread=_integer(params, "half_spread", 1, minimum=0),
            skew=float(_decimal(params, "skew", Decimal(0), minimum=None)),
            max_inventory=spec.quantity_to_lots(
                _decimal(params, "max_inventory", spec.lot_size * 10), "max_inventory"),
            min_requote_ns=int(_decimal(params, "min_requote_ms", Decimal(100),
                                        minimum=Decimal(0)) * 1_000_000),
            reference=_choice(params, "reference", "mid", ("mid", "micro")),
            display=spec.quantity_to_lots(_decimal(params, "display", spec.lot_size),
                                          "display") if "display" in params else None
        ), None, None
    side = Side(_choice(params, "side", "BUY", ("BUY", "SELL"), upper=True))
    quantity = spec.quantity_to_lots(_decimal(params, "quantity", spec.lot_size * 100),
                                     "quantity")
    first, last = data_time_range(fmt, path, spec)
    start = first + int(_decimal(params, "start", Decimal(0), minimum=Decimal(0)) * NS)
    end = (first + int(_decimal(params, "end", Decimal(0), minimum=Decimal(0)) * NS)
           if "end" in params else last)
    span = f"the data spans 0 to {(last - first) / NS:.3f} s"
    if start >= last:
        raise ValueError(f"start={params['start']}: at or after the data's end ({span})")
    if end <= start:
        raise ValueError(f"end={params.get('end')}: not after start ({span})")
    slices = _integer(params, "slices", 10, minimum=1)
    limit = (spec.price_to_ticks(_decimal(params, "limit", Decimal(0)), "limit")
             if "limit" in params else None)
    cap = (float(_decimal(params, "max_participation", Decimal(1), minimum=Decimal(0)))
           if "max_participation" in params else None)
    if cap is not None and not 0 < cap <= 1:
        raise ValueError(f"max_participation={params['max_participation']}: must be in (0, 1]")
    catch_up = _choice(params, "catch_up", "yes", ("yes", "no")) == "yes"
    if name == "twap":
        return (Twap(side, quantity, start, end, slices, limit, cap, catch_up), quantity,
                side)
    profile_arg = params.get("profile", "history" if history else "u-shape")
    profile = lookahead = None
    estimate = "u-shape"
    if profile_arg == "history":
        if not history:
            raise ValueError("profile=history: give other days' files with --history")
        profile = history_profile(list(history), fmt, spec, start, end, slices)
    elif profile_arg in ("u-shape", "causal"):
        estimate = profile_arg
    elif profile_arg == "lookahead":
        lookahead = [0] * slices
        for record in read_records(fmt, path, spec):
            if record.kind in (Kind.EXECUTE, Kind.PRINT) and start <= record.timestamp < end:
                lookahead[(record.timestamp - start) * slices // (end - start)] += (
                    record.quantity)
    else:
        try:
            profile = read_profile(Path(profile_arg))
        except OSError as error:
            raise ValueError(f"profile={profile_arg}: not u-shape, causal, history, lookahead "
                             f"or a readable profile file ({error.strerror or error})"
                             ) from None
    session = SESSION_NS if fmt == "lobster" else None  # LOBSTER's clock: after midnight
    vwap = Vwap(side, quantity, start, end, slices, limit, profile, lookahead,
                estimate=estimate, session=session, max_participation=cap, catch_up=catch_up)
    if profile_arg == "history":
        vwap.profile_kind = f"history ({len(history or [])} day(s))"
    return vwap, quantity, side
