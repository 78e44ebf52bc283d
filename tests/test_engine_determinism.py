"""Same commands, same bytes: events and snapshots are deterministic, and restoring a snapshot
mid-stream then continuing equals running straight through."""

from __future__ import annotations

import msgspec

from lobgw.book import BookSnapshot, Engine
from lobgw.book.commands import AnyCommand
from lobgw.book.events import AnyEvent, Event
from lobgw.book.synthetic import SYNTHETIC_SPEC, synthetic_commands

COMMANDS = synthetic_commands(30_000, seed=11, target_resting=300)
ENCODER = msgspec.msgpack.Encoder()


def run(engine: Engine, commands: list[AnyCommand]) -> list[Event]:
    return [event for command in commands for event in engine.apply(command)]


def test_same_commands_give_byte_identical_events_and_snapshots() -> None:
    first, second = Engine(SYNTHETIC_SPEC), Engine(SYNTHETIC_SPEC)
    first_bytes = ENCODER.encode(run(first, COMMANDS))
    second_bytes = ENCODER.encode(run(second, COMMANDS))
    assert first_bytes == second_bytes
    assert ENCODER.encode(first.snapshot()) == ENCODER.encode(second.snapshot())
    assert first.counters().trades > 1_000  # the stream really trades
    assert first.open_order_count() > 50


def test_batches_of_any_size_give_the_same_events_as_one_by_one() -> None:
    single = Engine(SYNTHETIC_SPEC)
    expected = ENCODER.encode(run(single, COMMANDS))
    for size in (1, 7, 256, len(COMMANDS)):
        engine = Engine(SYNTHETIC_SPEC)
        events: list[Event] = []
        for start in range(0, len(COMMANDS), size):
            engine.apply_batch(COMMANDS[start:start + size], events)
        assert ENCODER.encode(events) == expected
        assert ENCODER.encode(engine.snapshot()) == ENCODER.encode(single.snapshot())
        assert engine.counters() == single.counters()


def test_events_round_trip_through_the_wire_encoding() -> None:
    events = run(Engine(SYNTHETIC_SPEC), COMMANDS[:2_000])
    decoded = msgspec.msgpack.decode(ENCODER.encode(events), type=list[AnyEvent])
    assert decoded == events


def test_snapshot_restore_continue_equals_straight_through() -> None:
    straight = Engine(SYNTHETIC_SPEC)
    straight_events = run(straight, COMMANDS)
    for cut in (1, 9_999, 20_000):
        engine = Engine(SYNTHETIC_SPEC)
        head = run(engine, COMMANDS[:cut])
        blob = ENCODER.encode(engine.snapshot())
        restored = Engine.restore(msgspec.msgpack.decode(blob, type=BookSnapshot))
        assert ENCODER.encode(restored.snapshot()) == blob
        tail = run(restored, COMMANDS[cut:])
        assert ENCODER.encode(head + tail) == ENCODER.encode(straight_events)
        assert ENCODER.encode(restored.snapshot()) == ENCODER.encode(straight.snapshot())
