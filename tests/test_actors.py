"""The actor runtime on its own: batching, replies, refusals, failures, draining."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest

from lobgw.actors import BookReader, Exchange
from lobgw.book.commands import CancelOrder, SubmitOrder
from lobgw.book.events import Event, OrderAccepted, TradeExecuted
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.errors import InternalError, OverloadedError, ShuttingDownError, UnknownSymbolError

SPEC = InstrumentSpec("X", Decimal("1"), Decimal("1"))


async def test_requests_are_answered_and_batches_published_once() -> None:
    exchange = Exchange([SPEC], batch_size=64)
    published: list[list[Event]] = []

    def listener(symbol: str, events: list[Event], book: BookReader) -> None:
        assert symbol == "X"
        published.append(list(events))
        assert book.seq == events[-1].seq  # listeners see the book after the batch

    exchange.add_listener(listener)
    exchange.start()
    actor = exchange.actor("X")
    futures = [actor.ask([SubmitOrder(i, "a" if i % 2 else "b", Side.SELL if i % 2 else
                                     Side.BUY, 1, price=10)]) for i in range(1, 11)]
    results = await asyncio.gather(*futures)
    assert [type(r[0]) for r in results] == [OrderAccepted] * 10
    assert sum(isinstance(e, TradeExecuted) for r in results for e in r) == 5
    assert len(published) == 1  # ten requests queued together, one batch
    assert [e.seq for batch in published for e in batch] == list(range(1, 16))
    depth = await actor.query(lambda book: book.depth())
    assert depth == ([], [])
    await exchange.stop()


async def test_full_queue_refuses_at_once_and_stop_drains() -> None:
    exchange = Exchange([SPEC], queue_size=3)
    resting: list[int] = []
    exchange.add_listener(lambda symbol, events, book: resting.append(book.open_order_count()))
    exchange.start()
    actor = exchange.actor("X")
    actor.pause()
    await asyncio.sleep(0)  # the task starts and waits for work
    queued = [actor.ask([SubmitOrder(i, "a", Side.BUY, 1, price=5)]) for i in range(3)]
    await asyncio.sleep(0.01)  # it takes the first and holds it while paused
    queued.append(actor.ask([SubmitOrder(3, "a", Side.BUY, 1, price=5)]))
    with pytest.raises(OverloadedError):
        actor.ask([SubmitOrder(99, "a", Side.BUY, 1, price=5)])
    stopping = asyncio.create_task(exchange.stop())
    await asyncio.sleep(0.01)
    with pytest.raises(ShuttingDownError):
        actor.ask([CancelOrder(1)])
    await stopping
    assert all(future.done() for future in queued)  # drained before the task ended
    assert resting[-1] == 4
    with pytest.raises(UnknownSymbolError):
        exchange.actor("Y")


async def test_send_waits_for_room_instead_of_refusing() -> None:
    exchange = Exchange([SPEC], queue_size=1)
    exchange.start()
    actor = exchange.actor("X")

    async def send(order_id: int) -> list[Event]:
        return await (await actor.send([[SubmitOrder(order_id, "a", Side.BUY, 1, price=5)]]))

    results = await asyncio.gather(*(send(i) for i in range(20)))
    assert len(results) == 20
    assert await actor.query(lambda book: book.open_order_count()) == 20
    await exchange.stop()


async def test_a_failing_request_is_logged_answered_and_the_actor_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = Exchange([SPEC])
    exchange.start()
    actor = exchange.actor("X")

    def broken(book: BookReader) -> None:
        raise ValueError("boom")

    failing = actor.query(broken)
    fine = actor.ask([SubmitOrder(1, "a", Side.BUY, 1, price=5)])
    with caplog.at_level(logging.ERROR), pytest.raises(InternalError) as caught:
        await failing
    assert caught.value.error_id in caplog.text
    assert "boom" in caplog.text
    assert isinstance((await fine)[0], OrderAccepted)
    assert actor.running and actor.failures == 1
    await exchange.stop()


async def test_order_ids_are_unique_across_symbols() -> None:
    exchange = Exchange([SPEC, InstrumentSpec("Y", Decimal("1"), Decimal("1"))],
                        first_order_id=7)
    ids = {exchange.next_order_id() for _ in range(100)}
    assert len(ids) == 100 and min(ids) == 7
