"""A seeded synthetic order flow for one symbol, for benchmarks, tests and demos.

The mix: 55% limit orders around a drifting mid (a share of them marketable, some sweeping
several levels; IOC, FOK, post-only and every self-trade-prevention mode appear), 35% cancels
of live orders, 5% quantity-reducing amends and 5% market orders. The marketable share rises
with the number of resting orders, which holds the book near `target_resting` orders.
"""

from __future__ import annotations

import random
from decimal import Decimal

from lobgw.book.commands import AmendOrder, AnyCommand, CancelOrder, SubmitOrder
from lobgw.book.engine import Engine
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import OrderType, SelfTradePrevention, Side, TimeInForce

SYNTHETIC_SPEC = InstrumentSpec("SYN", Decimal("0.01"), Decimal("1"),
                                max_quantity=Decimal("1000"))
STP_MODES = [SelfTradePrevention.CANCEL_TAKER] * 7 + [
    SelfTradePrevention.CANCEL_MAKER, SelfTradePrevention.CANCEL_BOTH, SelfTradePrevention.NONE]


def synthetic_commands(
    count: int, seed: int = 7, target_resting: int = 1_000, spec: InstrumentSpec = SYNTHETIC_SPEC
) -> list[AnyCommand]:
    """Build `count` commands; an engine runs alongside so cancels always name live orders."""
    rng = random.Random(seed)
    tracker = Engine(spec)
    accounts = [f"acct{i}" for i in range(64)]
    live: list[int] = []
    commands: list[AnyCommand] = []
    mid = 100_000
    next_id = 1
    ts = 0
    while len(commands) < count:
        ts += 1_000
        if rng.random() < 0.02:
            mid += rng.choice((-1, 1))
        roll = rng.random()
        command: AnyCommand
        target = _pick_live(rng, live, tracker) if 0.55 <= roll < 0.95 else None
        if target is not None and roll < 0.90:
            command = CancelOrder(target, timestamp=ts)
        elif target is not None:
            view = tracker.order(target)
            assert view is not None
            live.append(target)
            command = AmendOrder(target, quantity=max(1, view.quantity - rng.randint(1, 10)),
                                 timestamp=ts)
        elif roll < 0.95:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            direction = 1 if side is Side.BUY else -1
            if rng.random() < 0.1 * tracker.open_order_count() / target_resting:
                offset = rng.randint(0, 6)  # marketable, sometimes through several levels
            else:
                offset = -1 - int(rng.expovariate(0.15))
            kind = rng.random()
            tif = (TimeInForce.IOC if kind < 0.05 else
                   TimeInForce.FOK if kind < 0.07 else TimeInForce.GTC)
            command = SubmitOrder(next_id, rng.choice(accounts), side, rng.randint(1, 100),
                                  price=mid + direction * offset, time_in_force=tif,
                                  post_only=tif is TimeInForce.GTC and kind > 0.97,
                                  stp=rng.choice(STP_MODES), timestamp=ts)
            next_id += 1
        else:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            command = SubmitOrder(next_id, rng.choice(accounts), side, rng.randint(1, 100),
                                  order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC,
                                  stp=rng.choice(STP_MODES), timestamp=ts)
            next_id += 1
        tracker.apply(command)
        if isinstance(command, SubmitOrder) and tracker.order(command.order_id) is not None:
            live.append(command.order_id)
        commands.append(command)
    return commands


def _pick_live(rng: random.Random, live: list[int], tracker: Engine) -> int | None:
    """Draw (and remove) a random live order id; forget ids that have since filled."""
    while live:
        index = rng.randrange(len(live))
        order_id = live[index]
        live[index] = live[-1]
        live.pop()
        if tracker.order(order_id) is not None:
            return order_id
    return None
