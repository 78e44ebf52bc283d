"""Actors: each symbol's engine inside one asyncio task fed by one bounded queue, with its
journal. Nothing outside this package holds an `Engine`."""

from lobgw.actors.actor import BookReader, Listener, Reply, RowHook, SymbolActor
from lobgw.actors.exchange import Exchange
from lobgw.actors.journal import Journal, Recovery

__all__ = ["BookReader", "Exchange", "Journal", "Listener", "Recovery", "Reply", "RowHook",
           "SymbolActor"]
