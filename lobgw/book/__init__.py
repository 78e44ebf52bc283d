"""The matching engine of one symbol and its vocabulary (pure, sans-I/O).

    from lobgw.book import Engine, SubmitOrder, TradeExecuted, Side, InstrumentSpec

Commands are what a driver asks (imperative), events what happened (past tense); prices are
integer ticks and quantities integer lots, converted at the edges by `InstrumentSpec`.
"""

from lobgw.book.commands import (
    AmendOrder,
    AnyCommand,
    CancelOrder,
    Command,
    ExecuteOrder,
    ExpireOrders,
    ReduceOrder,
    SubmitOrder,
)
from lobgw.book.engine import Engine
from lobgw.book.events import (
    AnyEvent,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRefreshed,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from lobgw.book.instrument import DecimalFormat, FeeSchedule, InstrumentSpec, SpecFormat
from lobgw.book.types import (
    REJECTIONS,
    OrderType,
    Reason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from lobgw.book.views import BookSnapshot, Counters, OrderView

__all__ = [
    "REJECTIONS", "AmendOrder", "AnyCommand", "AnyEvent", "BookSnapshot", "CancelOrder",
    "Command", "Counters", "DecimalFormat", "Engine", "Event", "ExecuteOrder", "ExpireOrders",
    "FeeSchedule", "InstrumentSpec", "OrderAccepted", "OrderAmended", "OrderCanceled",
    "OrderExpired", "OrderRefreshed", "OrderRejected", "OrderTriggered", "OrderType",
    "OrderView", "Reason", "ReduceOrder", "SelfTradePrevention", "Side", "SpecFormat",
    "SubmitOrder", "TimeInForce", "TradeExecuted",
]
