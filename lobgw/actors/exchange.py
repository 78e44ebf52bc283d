"""The exchange runtime: one actor per configured symbol, and the order-id counter.

The gateway, replay and backtests all reach books only through `Exchange.actor(symbol)`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable

from lobgw.actors.actor import LatencyObserver, Listener, SymbolActor
from lobgw.actors.journal import Journal, Recovery
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.views import BookSnapshot
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
        journals: dict[str, Journal] | None = None,
        expire_on_clock: bool = False,
    ) -> None:
        self.actors: dict[str, SymbolActor] = {}
        for spec in specs:
            self.actors[spec.symbol] = SymbolActor(
                spec, queue_size=queue_size, batch_size=batch_size,
                observe_latency=observe_latency,
                journal=(journals or {}).get(spec.symbol), expire_on_clock=expire_on_clock)
        self._order_ids = itertools.count(first_order_id)
        self.recoveries: dict[str, Recovery] = {}

    @property
    def journaled(self) -> bool:
        """Whether any symbol keeps a journal (then `recover` starts the exchange)."""
        return any(actor.journal is not None for actor in self.actors.values())

    async def recover(
        self, repair: bool = False,
        restored: Callable[[str, BookSnapshot], None] | None = None,
    ) -> dict[str, Recovery]:
        """Rebuild every journaled symbol (its snapshot, then its journal tail through the
        actor) and start every actor. `restored(symbol, snapshot)` sees each snapshot before
        its tail, so a listener can learn what the snapshot brought back. Raises
        JournalCorruptError on damage unless `repair`."""
        max_order_id = 0
        for symbol, actor in self.actors.items():
            if actor.journal is None:
                continue
            seen = None if restored is None else (
                lambda snapshot, symbol=symbol: restored(symbol, snapshot))
            recovery = await actor.recover(repair, seen)
            self.recoveries[symbol] = recovery
            max_order_id = max(max_order_id, recovery.max_order_id)
        self.start()
        self._order_ids = itertools.count(max(max_order_id + 1, next(self._order_ids)))
        return self.recoveries

    def actor(self, symbol: str) -> SymbolActor:
        """The actor trading `symbol`; raise UnknownSymbolError if there is none."""
        try:
            return self.actors[symbol]
        except KeyError:
            raise UnknownSymbolError(symbol) from None

    def spec(self, symbol: str) -> InstrumentSpec:
        """The instrument spec of `symbol`; raise UnknownSymbolError if unknown."""
        return self.actor(symbol).spec

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
        """Stop accepting, drain every queue, end every task; close the journals."""
        await asyncio.gather(*(actor.stop() for actor in self.actors.values()))
        for actor in self.actors.values():
            if actor.journal is not None:
                actor.journal.close()

    @property
    def running(self) -> bool:
        """True while every actor is running."""
        return all(actor.running for actor in self.actors.values())
