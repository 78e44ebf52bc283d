"""Actors: each symbol's engine inside one asyncio task fed by one bounded queue."""

from lobgw.actors.actor import BookReader, Listener, SymbolActor
from lobgw.actors.exchange import Exchange

__all__ = ["BookReader", "Exchange", "Listener", "SymbolActor"]
