"""The exchange runtime: one actor per configured symbol, and the order-id counter.

The gateway, replay and backtests all reach books only through `Exchange.actor(symbol)`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

from lobgw.actors.actor import LatencyObserver, Listener, SymbolActor
from lobgw.book.engine import Engine
from lobgw.book.instrument import InstrumentSpec
from lobgw.errors import UnknownSymbolError


class Exchange:
    """Symbol -> actor registry with a shared order-id sequence."""

    def __init__(
        self,
        specs: Iterable[InstrumentSpec],
        *,
        queue_size: int = 16_384,
        batch_size: int = 512,
        observe_latency: LatencyObserver | None = None,
        first_order_id: int = 1,
    ) -> None:
        self.actors: dict[str, SymbolActor] = {}
        for spec in specs:
            self.actors[spec.symbol] = SymbolActor(
                Engine(spec), queue_size=queue_size, batch_size=batch_size,
                observe_latency=observe_latency)
        self._order_ids = itertools.count(first_order_id)

    def actor(self, symbol: str) -> SymbolActor:
        """The actor trading `symbol`; raise UnknownSymbolError if there is none."""
        try:
            return self.actors[symbol]
        except KeyError:
            raise UnknownSymbolError(symbol) from None

    def spec(self, symbol: str) -> InstrumentSpec:
        """The instrument spec of `symbol`; raise UnknownSymbolError if unknown."""
        return self.actor(symbol).engine.spec

    @property
    def symbols(self) -> list[str]:
        """Configured symbols, in configuration order."""
        return list(self.actors)

    def next_order_id(self) -> int:
        """A new order id, unique across all symbols of this exchange."""
        return next(self._order_ids)

    def add_listener(self, listener: Listener) -> None:
        """Publish every symbol's batches to `listener`."""
        for actor in self.actors.values():
            actor.add_listener(listener)

    def start(self) -> None:
        """Start every actor's task."""
        for actor in self.actors.values():
            actor.start()

    async def stop(self) -> None:
        """Stop accepting, drain every queue, end every task."""
        await asyncio.gather(*(actor.stop() for actor in self.actors.values()))

    @property
    def running(self) -> bool:
        """True while every actor is running."""
        return all(actor.running for actor in self.actors.values())
