"""Instrument specs and the decimal <-> integer conversions that happen only at the edges.

Inside the engine a price is a whole number of ticks and a quantity a whole number of lots.
Converting refuses anything off the grid instead of rounding: a client who sends 10.005 on a
0.01 tick meant something, and silently trading at 10.00 or 10.01 would be wrong either way.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, DecimalTuple, InvalidOperation
from typing import Annotated

import msgspec

from lobgw.errors import ErrorCode, InputError

PositiveDecimal = Annotated[Decimal, msgspec.Meta(description="a positive decimal, as a string")]


class InstrumentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One symbol's trading rules, in decimal units as users write them."""

    symbol: str
    tick_size: PositiveDecimal
    lot_size: PositiveDecimal
    min_quantity: Decimal | None = None
    max_quantity: Decimal | None = None
    price_band_low: Decimal | None = None
    price_band_high: Decimal | None = None

    def __post_init__(self) -> None:
        # ValueError raised here becomes a msgspec.ValidationError naming this struct's path.
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be a positive decimal")
        try:
            if self.min_lots > self.max_lots:
                raise ValueError("min_quantity must not exceed max_quantity")
            if self.band_low_ticks > self.band_high_ticks:
                raise ValueError("price_band_low must not exceed price_band_high")
        except InputError as error:
            raise ValueError(f"{error.field}: {error.reason}") from None

    # -- the engine's integer limits ---------------------------------------------------------

    @property
    def min_lots(self) -> int:
        """Smallest accepted order quantity in lots (at least one lot)."""
        if self.min_quantity is None:
            return 1
        return max(1, self.quantity_to_lots(self.min_quantity, "min_quantity"))

    @property
    def max_lots(self) -> int:
        """Largest accepted order quantity in lots (unbounded when not configured)."""
        if self.max_quantity is None:
            return UNBOUNDED
        return self.quantity_to_lots(self.max_quantity, "max_quantity")

    @property
    def band_low_ticks(self) -> int:
        """Lowest accepted limit price in ticks (1 tick when no band is configured)."""
        if self.price_band_low is None:
            return 1
        return self.price_to_ticks(self.price_band_low, "price_band_low")

    @property
    def band_high_ticks(self) -> int:
        """Highest accepted limit price in ticks."""
        if self.price_band_high is None:
            return UNBOUNDED
        return self.price_to_ticks(self.price_band_high, "price_band_high")

    # -- conversions -------------------------------------------------------------------------

    def price_to_ticks(self, price: Decimal, field: str = "price") -> int:
        """Convert a decimal price to ticks, refusing prices off the tick grid or not positive."""
        return _to_units(price, self.tick_size, field, ErrorCode.INVALID_PRICE,
                         ErrorCode.PRICE_OFF_TICK)

    def quantity_to_lots(self, quantity: Decimal, field: str = "quantity") -> int:
        """Convert a decimal quantity to lots, refusing quantities off the lot grid or <= 0."""
        return _to_units(
            quantity, self.lot_size, field, ErrorCode.INVALID_QUANTITY, ErrorCode.QUANTITY_OFF_LOT
        )

    def parse_price(self, text: str, field: str = "price") -> int:
        """Ticks of a price written as the API documents it (see `parse_decimal`)."""
        return self.price_to_ticks(parse_decimal(text, field, ErrorCode.INVALID_PRICE), field)

    def parse_quantity(self, text: str, field: str = "quantity") -> int:
        """Lots of a quantity written as the API documents it (see `parse_decimal`)."""
        return self.quantity_to_lots(
            parse_decimal(text, field, ErrorCode.INVALID_QUANTITY), field)

    def ticks_to_price(self, ticks: int) -> Decimal:
        """Convert ticks back to a decimal price, exact and with the tick size's decimals."""
        return self.tick_size * ticks

    def format_price(self, ticks: int) -> str:
        """Ticks as the decimal price text that goes on the wire (same digits as Decimal)."""
        return format_units(ticks, self.tick_size)

    def format_quantity(self, lots: int) -> str:
        """Lots as the decimal quantity text that goes on the wire."""
        return format_units(lots, self.lot_size)

    def lots_to_quantity(self, lots: int) -> Decimal:
        """Convert lots back to a decimal quantity, exact and with the lot size's decimals."""
        return self.lot_size * lots


DECIMAL_TEXT = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?", re.ASCII)
"""The only decimal text accepted from clients: ASCII digits, an optional fraction."""


def parse_decimal(text: str, field: str, invalid: ErrorCode) -> Decimal:
    """A decimal exactly as documented, or InputError naming the field.

    Text that is no number at all is INVALID_VALUE; a number written another way (a sign,
    an exponent, NaN, non-ASCII digits, too many digits) is `invalid`, as is zero.
    """
    if DECIMAL_TEXT.fullmatch(text) is None:
        try:
            Decimal(text)
        except (InvalidOperation, ValueError):
            raise InputError(ErrorCode.INVALID_VALUE, field,
                             "not a number: send ASCII digits with an optional fraction, "
                             "as a string") from None
        raise InputError(invalid, field, "must be ASCII digits with an optional fraction "
                         "(no sign, exponent or other digits; at most 30 before and 30 "
                         "after the point)")
    return Decimal(text)


@functools.cache
def _unit_scale(unit: DecimalTuple) -> tuple[int, int]:
    """A unit as (integer multiplier, decimal places): 0.05 -> (5, 2), 10 -> (10, 0).

    Cached by the digits tuple, not the Decimal: 0.5 == 0.50 but they print differently.
    """
    _, digits, exponent = unit
    assert isinstance(exponent, int)
    multiplier = int("".join(map(str, digits)))
    if exponent >= 0:
        return multiplier * 10**exponent, 0
    return multiplier, -exponent


def format_units(count: int, unit: Decimal) -> str:
    """`count * unit` as plain decimal text (the same text as `format(unit * count, "f")`)."""
    return DecimalFormat(unit)(count)


class DecimalFormat:
    """Formats counts of one unit as decimal text with integer arithmetic only.

    Build one per unit and reuse it: the gateway formats every price and quantity it sends,
    and Decimal arithmetic plus formatting costs several times more.
    """

    __slots__ = ("multiplier", "places")

    def __init__(self, unit: Decimal) -> None:
        self.multiplier, self.places = _unit_scale(unit.as_tuple())

    def __call__(self, count: int) -> str:
        """`count` units as text."""
        value = count * self.multiplier
        places = self.places
        if not places:
            return str(value)
        digits = str(-value if value < 0 else value).rjust(places + 1, "0")
        text = f"{digits[:-places]}.{digits[-places:]}"
        return "-" + text if value < 0 else text


class SpecFormat:
    """The price and quantity formats of one instrument."""

    __slots__ = ("price", "quantity")

    def __init__(self, spec: InstrumentSpec) -> None:
        self.price = DecimalFormat(spec.tick_size)
        self.quantity = DecimalFormat(spec.lot_size)


UNBOUNDED = 1 << 62
"""A bound that no real price in ticks or quantity in lots reaches."""


def _to_units(value: Decimal, unit: Decimal, field: str, invalid: ErrorCode,
              off_grid: ErrorCode) -> int:
    if not value.is_finite() or value <= 0:
        raise InputError(invalid, field, "must be a finite number greater than zero")
    if value.adjusted() - unit.adjusted() > 18:  # more units than an int64 holds
        raise InputError(invalid, field, f"{value} is too large")
    units, remainder = divmod(value, unit)
    if remainder:
        raise InputError(off_grid, field, f"{value} is not a multiple of {unit}")
    whole = int(units)
    if whole >= UNBOUNDED:
        raise InputError(invalid, field, f"{value} is too large")
    return whole


class FeeSchedule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A symbol's trading fees: basis points of notional and/or an amount per unit of
    quantity, for the maker and the taker side of a fill. Negative values are rebates (a
    maker rebate is often a market maker's whole edge). Amounts are in the price's currency."""

    symbol: str = ""
    maker_bps: Decimal = Decimal(0)
    taker_bps: Decimal = Decimal(0)
    maker_per_unit: Decimal = Decimal(0)
    taker_per_unit: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in ("maker_bps", "taker_bps", "maker_per_unit", "taker_per_unit"):
            value = getattr(self, name)
            if not value.is_finite():
                raise ValueError(f"{name} must be a finite decimal")

    def fee(self, maker: bool, price: Decimal, quantity: Decimal) -> Decimal:
        """The fee of one fill (negative: a rebate) at `price` for `quantity` units."""
        bps, per_unit = ((self.maker_bps, self.maker_per_unit) if maker
                         else (self.taker_bps, self.taker_per_unit))
        return price * quantity * bps / 10_000 + quantity * per_unit
