"""The journal on its own (in-process, real files): round trip, rotation, damage, repair."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from lobgw.actors import Exchange
from lobgw.actors.journal import HEADER, Journal, read_journal
from lobgw.book import BookSnapshot, Engine
from lobgw.book.commands import CancelOrder, SubmitOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import Side
from lobgw.errors import JournalCorruptError, OverloadedError

SPEC = InstrumentSpec("J", Decimal("0.01"), Decimal("1"))


def order(order_id: int, side: Side = Side.BUY, price: int = 100, quantity: int = 5
          ) -> SubmitOrder:
    return SubmitOrder(order_id, "a" if side is Side.BUY else "b", side, quantity, price=price,
                       client_order_id=f"c{order_id}")


async def run_exchange(directory: Path, batches: list[list[object]], **options: object
                       ) -> BookSnapshot:
    journal = Journal(directory, "J", **options)  # type: ignore[arg-type]
    exchange = Exchange([SPEC], journals={"J": journal})
    await exchange.recover()
    actor = exchange.actor("J")
    for batch in batches:
        await (await actor.send([batch]))  # type: ignore[list-item]
    snapshot = await actor.query(lambda book: book.snapshot())
    await exchange.stop()
    return snapshot


async def test_commands_survive_a_restart_with_snapshots_and_rotation(tmp_path: Path) -> None:
    batches: list[list[object]] = [[order(i)] for i in range(1, 8)]
    batches += [[CancelOrder(3)], [order(50, Side.SELL, 100, 12)]]
    before = await run_exchange(tmp_path, batches, snapshot_every_commands=3)
    folder = tmp_path / "J"
    snapshots = sorted(p.name for p in folder.glob("snapshot-*.snap"))
    segments = sorted(p.name for p in folder.glob("journal-*.log"))
    assert len(snapshots) == 2  # the newest and the one before it are kept
    assert segments[0] >= "journal-" + snapshots[0][9:17]  # older segments were deleted
    after = await run_exchange(tmp_path, [])
    assert msgspec.msgpack.encode(after) == msgspec.msgpack.encode(before)
    assert after.seq == before.seq and after.counters == before.counters
    # the journal alone (read only) rebuilds the same book
    snapshot, _, tail = read_journal(folder, SPEC)
    engine = rebuilt(snapshot)
    for batch in tail:
        engine.apply_batch(batch)
    assert msgspec.msgpack.encode(engine.snapshot()) == msgspec.msgpack.encode(before)
    # the sell took c1, c2 and part of c4 (c3 was cancelled): FIFO and client ids survive
    assert [(o.client_order_id, o.remaining) for o in after.bids][:2] == [("c4", 3), ("c5", 5)]


def rebuilt(snapshot: BookSnapshot | None) -> Engine:
    """The engine a recovery starts from: the snapshot's book, or an empty one."""
    return Engine(SPEC) if snapshot is None else Engine.restore(snapshot)


def write_records(directory: Path, count: int) -> Path:
    """A journal with `count` one-order records, written with the journal's own code."""
    journal = Journal(directory, "J")
    journal.open()
    for i in range(1, count + 1):
        journal.append([order(i, price=100 + i)])
    journal.close()
    return directory / "J" / "journal-00000000.log"


def test_torn_last_record_is_truncated_and_reported(tmp_path: Path) -> None:
    segment = write_records(tmp_path, 3)
    good_size = segment.stat().st_size
    with segment.open("ab") as handle:
        handle.write(HEADER.pack(500, 1234) + b"partial")  # a crash mid-write
    snapshot, recovery, tail = Journal(tmp_path, "J").recover(SPEC)
    engine = rebuilt(snapshot)
    assert recovery.torn_bytes == HEADER.size + len(b"partial")
    assert segment.stat().st_size == good_size  # truncated away
    assert [batch[0].order_id for batch in tail] == [1, 2, 3]  # type: ignore[union-attr]
    for batch in tail:
        engine.apply_batch(batch)
    assert engine.open_order_count() == 3


def test_corruption_in_the_middle_stops_recovery_unless_repaired(tmp_path: Path) -> None:
    segment = write_records(tmp_path, 5)
    data = bytearray(segment.read_bytes())
    record = HEADER.size + HEADER.unpack_from(data, 0)[0]
    data[record + HEADER.size + 3] ^= 0xFF  # damage the second record's payload
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as refused:
        Journal(tmp_path, "J").recover(SPEC)
    assert refused.value.offset == record and str(segment) in str(refused.value)
    _, recovery, tail = Journal(tmp_path, "J").recover(SPEC, repair=True)
    assert [batch[0].order_id for batch in tail] == [1]  # type: ignore[union-attr]
    (quarantined,) = recovery.quarantined
    assert quarantined.parent.name == "quarantine"
    assert quarantined.stat().st_size == len(data) - record  # nothing silently dropped
    assert segment.stat().st_size == record


async def test_full_queue_and_journal_refusals_do_not_reach_the_book(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "J")
    exchange = Exchange([SPEC], queue_size=1, journals={"J": journal})
    await exchange.recover()
    actor = exchange.actor("J")
    actor.pause()
    first = actor.ask([order(1)])
    with pytest.raises(OverloadedError):
        actor.ask([order(2)])
        actor.ask([order(3)])
    actor.resume()
    await first
    await exchange.stop()
    engine = rebuilt(Journal(tmp_path, "J").recover(SPEC)[0])
    assert engine.open_order_count() in (1, 2)


def test_journal_tools_inspect_and_replay(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_records(tmp_path, 4)
    config = tmp_path / "config.toml"
    config.write_text('[[symbols]]\nsymbol = "J"\ntick_size = "0.01"\nlot_size = "1"\n')
    inspect = subprocess.run([sys.executable, "-m", "lobgw", "journal", "inspect", str(tmp_path),
                              "--config", str(config)], capture_output=True, text=True,
                             timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    assert "journal-00000000.log: 4 records, 4 commands" in inspect.stdout
    assert "events: seq 1..4" in inspect.stdout
    book, snapshot = tmp_path / "book.csv", tmp_path / "final.snap"
    replay = subprocess.run([sys.executable, "-m", "lobgw", "journal", "replay", str(tmp_path),
                             "--symbol", "J", "--config", str(config), "--book-out", str(book),
                             "--levels", "2", "--snapshot-out", str(snapshot)],
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    rows = book.read_text().splitlines()
    assert len(rows) == 4
    assert rows[-1] == "9999999999,0,1.04,5,9999999999,0,1.03,5"
    final = msgspec.msgpack.decode(snapshot.read_bytes(), type=BookSnapshot)
    assert final.seq == 4 and len(final.bids) == 4
    missing = subprocess.run([sys.executable, "-m", "lobgw", "journal", "inspect",
                              str(tmp_path), "--symbol", "NOPE"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no journaled symbol named NOPE" in missing.stderr


@pytest.mark.parametrize("count", [0, 1, 15, 16, 2047, 2048, 2049, 65535, 65536, 70000])
def test_arrays_encoded_in_pieces_are_the_same_bytes(count: int) -> None:
    from lobgw.encoding import encode_array

    items = [order(i) for i in range(count)] if count < 5000 else list(range(count))
    assert bytes(encode_array(items)) == msgspec.msgpack.encode(items)
    assert bytes(encode_array(items, chunk=7)) == msgspec.msgpack.encode(items)
