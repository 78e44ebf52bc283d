"""Backtests: replayed market data and a strategy through the same actor queue.

    from lobgw.sim.backtest import BacktestEngine, MarketMaker
    result = BacktestEngine(records, spec, MarketMaker(...), latency_us=500).run()

`core` runs the data and the strategy (fill, queue and latency assumptions in its
docstring), `strategies` holds TWAP, VWAP and the market maker, `results` the report.
"""

from lobgw.sim.backtest.core import (
    IMPACTS,
    STRATEGY_ACCOUNT,
    Backtest,
    BacktestEngine,
    BaseStrategy,
    BookView,
    build_result,
    run_backtest,
)
from lobgw.sim.backtest.results import NS, BacktestResult, PnlPoint
from lobgw.sim.backtest.strategies import (
    MarketMaker,
    ScheduledExecution,
    Twap,
    Vwap,
    build_strategy,
    parse_params,
    read_profile,
)

__all__ = ["IMPACTS", "NS", "STRATEGY_ACCOUNT", "Backtest", "BacktestEngine", "BacktestResult",
           "BaseStrategy", "BookView", "MarketMaker", "PnlPoint", "ScheduledExecution", "Twap",
           "Vwap", "build_result", "build_strategy", "parse_params", "read_profile",
           "run_backtest"]
