"""Order state read from engine events: the lifecycle table and the order tracker (pure)."""

from lobgw.orders.lifecycle import ExecutionKind, OrderStatus, transition
from lobgw.orders.tracker import (
    Fill,
    Liquidity,
    Observer,
    OrderState,
    OrderTracker,
    fills_for,
    trade_fills,
)

__all__ = ["ExecutionKind", "Fill", "Liquidity", "Observer", "OrderState", "OrderStatus",
           "OrderTracker", "fills_for", "trade_fills", "transition"]
