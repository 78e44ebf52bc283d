"""The `--plot` report: price with fills, inventory and PnL over time (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.sim.backtest.results import NS, BacktestResult


def plot_result(result: BacktestResult, spec: InstrumentSpec, path: Path) -> None:
    """Write a three-panel PNG: mid with fills, position, mark-to-mid and realized PnL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = result.start or 0
    seconds = [(p.timestamp - start) / NS for p in result.pnl]
    figure, (prices, inventory, pnl) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    for side, marker, colour in ((Side.BUY, "^", "tab:green"), (Side.SELL, "v", "tab:red")):
        fills = [f for f in result.fill_list if f.side is side]
        prices.scatter([(f.timestamp - start) / NS for f in fills],
                       [float(f.price) for f in fills], marker=marker, s=14, color=colour,
                       label=f"{side.value.lower()} fills")
    if result.arrival_price is not None:
        prices.axhline(float(result.arrival_price), color="grey", linewidth=0.8,
                       label="arrival")
    if result.market_vwap is not None:
        prices.axhline(float(result.market_vwap), color="tab:blue", linewidth=0.8,
                       linestyle="--", label="market VWAP")
    prices.set_ylabel("price")
    prices.legend(loc="best", fontsize="small")
    inventory.step(seconds, [float(p.position) for p in result.pnl], where="post")
    inventory.set_ylabel("position")
    pnl.plot(seconds, [float(p.mark_to_mid) for p in result.pnl], label="mark-to-mid")
    pnl.plot(seconds, [float(p.realized) for p in result.pnl], label="realized")
    pnl.set_ylabel("PnL")
    pnl.set_xlabel("seconds since start")
    pnl.legend(loc="best", fontsize="small")
    figure.suptitle(f"{result.strategy} on {result.symbol}: {result.fills} fills")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
