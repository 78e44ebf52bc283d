"""A damaged journal or a misbehaving disk never loses acknowledged orders silently.

Each case either recovers everything that was acknowledged or refuses to start (a real
`lobgw serve`, exit code 3, naming the file and offset; `journal inspect` agrees). Journals
are written with the journal's own code, then damaged on disk the way a bad disk would.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobgw.actors import Exchange, Journal
from lobgw.actors.journal import HEADER, MARKER, segment_path, snapshot_path
from lobgw.book import Engine, InstrumentSpec, Side, SubmitOrder
from lobgw.errors import JournalCorruptError, JournalUnavailableError
from tests.conftest import ALICE_KEY, spawn_server
from tests.test_serve import free_port, wait_ready

SPEC = InstrumentSpec("J", Decimal("0.01"), Decimal("1"))
CONFIG = f"""
[[symbols]]
symbol = "J"
tick_size = "0.01"
lot_size = "1"

[[accounts]]
name = "a"
api_key = "{ALICE_KEY}"

[journal]
directory = "DIRECTORY"
"""


def order(order_id: int, price: int | None = None) -> SubmitOrder:
    return SubmitOrder(order_id, "a", Side.BUY, 5, price=price or 100 + order_id)


def write_journal(directory: Path, records: int, segments: int = 1) -> Journal:
    """`records` one-order records per segment, in `segments` segments (no snapshot)."""
    journal = Journal(directory, "J")
    journal.open()
    order_id = 0
    for segment in range(segments):
        if segment:
            journal.close()
            journal.segment += 1
            journal.open()
        for _ in range(records):
            order_id += 1
            journal.append([order(order_id)])
    journal.close()
    return journal


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += HEADER.size + HEADER.unpack_from(data, offset)[0]
    return offsets


def damage(path: Path, offset: int, change: Callable[[int], int] = lambda b: b ^ 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = change(data[offset])
    path.write_bytes(bytes(data))


def config_for(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.replace("DIRECTORY", str(tmp_path / "data")))
    return path


async def refused_start(tmp_path: Path, *args: str, config: Path | None = None
                        ) -> tuple[int, str]:
    process = await spawn_server(config or config_for(tmp_path), "--port", str(free_port()),
                                 *args)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def inspect(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lobgw", "journal", "inspect",
                           str(tmp_path / "data"), "--config", str(config_for(tmp_path))],
                          capture_output=True, text=True, timeout=60)


async def open_order_ids(port: int) -> set[int]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/api/v1/orders", headers={"X-API-Key": ALICE_KEY}) as reply:
        return {order["order_id"] for order in await reply.json()}


# -- torn versus corrupt -----------------------------------------------------------------------

async def test_a_flipped_length_byte_mid_segment_is_corruption_not_a_torn_tail(
        tmp_path: Path) -> None:
    write_journal(tmp_path / "data", 400)
    segment = segment_path(tmp_path / "data" / "J", 0)
    size = segment.stat().st_size
    target = record_offsets(segment)[209]
    damage(segment, target + 2)  # the length's third byte: it now runs past the end
    code, stderr = await refused_start(tmp_path)
    assert code == 3, stderr
    assert f"{segment} at offset {target}" in stderr and "damaged length field" in stderr
    assert "--repair" in stderr and "drops 190 journaled command(s)" in stderr
    assert segment.stat().st_size == size  # nothing was cut
    verdict = inspect(tmp_path)
    assert verdict.returncode == 3 and "verdict: CORRUPT" in verdict.stdout
    assert "torn" not in verdict.stdout


async def test_a_bad_crc_on_a_complete_last_record_is_corruption(tmp_path: Path) -> None:
    write_journal(tmp_path / "data", 5)
    segment = segment_path(tmp_path / "data" / "J", 0)
    last = record_offsets(segment)[-1]
    damage(segment, segment.stat().st_size - 1)  # the last byte of the last payload
    code, stderr = await refused_start(tmp_path)
    assert code == 3 and f"at offset {last}" in stderr and "CRC mismatch" in stderr, stderr
    assert inspect(tmp_path).returncode == 3


def test_a_torn_tail_is_cut_and_kept_in_quarantine(tmp_path: Path) -> None:
    write_journal(tmp_path / "data", 3)
    segment = segment_path(tmp_path / "data" / "J", 0)
    good = segment.stat().st_size
    with segment.open("ab") as handle:
        handle.write(HEADER.pack(500, 1234) + b"partial")
    verdict = inspect(tmp_path)
    assert verdict.returncode == 0 and "torn last record of 15 bytes" in verdict.stdout
    _, recovery, tail = Journal(tmp_path / "data", "J").recover(SPEC)
    assert (recovery.torn_bytes, len(tail), segment.stat().st_size) == (15, 3, good)
    (kept,) = recovery.quarantined
    assert kept.read_bytes() == HEADER.pack(500, 1234) + b"partial"


def test_a_torn_tail_before_an_empty_prepared_segment_is_still_a_torn_tail(
        tmp_path: Path) -> None:
    write_journal(tmp_path / "data", 3)
    segment = segment_path(tmp_path / "data" / "J", 0)
    with segment.open("ab") as handle:
        handle.write(HEADER.pack(500, 1234) + b"partial")
    segment_path(tmp_path / "data" / "J", 1).touch()  # made ahead of the next rotation
    _, recovery, tail = Journal(tmp_path / "data", "J").recover(SPEC)
    assert (recovery.torn_bytes, len(tail)) == (15, 3)


async def test_repair_quarantines_from_the_first_bad_byte_and_counts_what_it_drops(
        tmp_path: Path) -> None:
    write_journal(tmp_path / "data", 400)
    segment = segment_path(tmp_path / "data" / "J", 0)
    damage(segment, record_offsets(segment)[209] + 2)
    port = free_port()
    process = await spawn_server(config_for(tmp_path), "--port", str(port), "--repair")
    await wait_ready(port)
    assert await open_order_ids(port) == set(range(1, 210))
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/api/v1/orders", headers={"X-API-Key": ALICE_KEY},
            json={"symbol": "J", "side": "BUY", "quantity": "1", "price": "1"}) as reply:
        placed = (await reply.json())["order"]["order_id"]
    assert placed > 400  # the dropped orders' ids were acknowledged once: never reused
    process.terminate()
    _, stderr = await process.communicate()
    assert "dropping 190 acknowledged command(s)" in stderr.decode()


async def test_both_snapshots_damaged_refuses_to_start(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    journal = write_journal(directory, 10)
    engine = Engine(SPEC)
    for order_id in range(1, 11):
        engine.apply(order(order_id))
    journal.segment = 0
    journal.write_snapshot(engine.capture())   # snapshot-1
    journal.write_snapshot(engine.capture())   # snapshot-2: segment 0 is deleted
    journal.close()
    assert not segment_path(directory / "J", 0).exists()
    for index in (1, 2):
        damage(snapshot_path(directory / "J", index), 20)
    code, stderr = await refused_start(tmp_path)
    assert code == 3 and "no usable snapshot (2 damaged)" in stderr, stderr
    assert inspect(tmp_path).returncode == 3


async def test_a_missing_middle_segment_refuses_to_start(tmp_path: Path) -> None:
    write_journal(tmp_path / "data", 3, segments=3)
    segment_path(tmp_path / "data" / "J", 1).unlink()
    code, stderr = await refused_start(tmp_path)
    assert code == 3 and "segment 1 is missing from the chain" in stderr, stderr
    with pytest.raises(JournalCorruptError, match="missing"):
        Journal(tmp_path / "data", "J").recover(SPEC)


# -- a disk that fails a write -----------------------------------------------------------------

def failing(call: Callable[..., Any], failures: list[int]) -> Callable[..., Any]:
    """`call`, except that the next `failures[0]` calls raise EIO."""
    def wrapper(*args: object) -> Any:
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        return call(*args)
    return wrapper


@pytest.mark.parametrize("system_call", ["_write", "_fsync"])
async def test_an_order_refused_for_an_io_error_never_becomes_live(
        tmp_path: Path, system_call: str) -> None:
    journal = Journal(tmp_path, "J")
    exchange = Exchange([SPEC], journals={"J": journal})
    await exchange.recover()
    actor = exchange.actor("J")
    await actor.ask([order(1)])
    failures = [1]
    setattr(journal, system_call, failing(getattr(journal, system_call), failures))
    with pytest.raises(JournalUnavailableError):
        await actor.ask([order(2)])
    assert not actor.journal_available
    await actor.ask([order(3)])  # the disk is back: the journal takes writes again
    await exchange.stop()
    snapshot, _, tail = Journal(tmp_path, "J").recover(SPEC)
    restored = Engine(SPEC) if snapshot is None else Engine.restore(snapshot)
    for batch in tail:
        restored.apply_batch(batch)
    assert restored.order(1) is not None and restored.order(3) is not None
    assert restored.order(2) is None  # refused: not in the book, not after a restart


async def test_a_write_that_cannot_be_undone_stops_the_journal_and_marks_the_disk(
        tmp_path: Path) -> None:
    journal = Journal(tmp_path, "J")
    exchange = Exchange([SPEC], journals={"J": journal})
    await exchange.recover()
    actor = exchange.actor("J")
    await actor.ask([order(1)])
    journal._fsync = failing(journal._fsync, [2])  # the write's, then the undo's
    # the write itself lands (the fsync fails after it) and cannot be cut back
    real_ftruncate = os.ftruncate

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    os.ftruncate = no_truncate
    try:
        with pytest.raises(JournalUnavailableError):
            await actor.ask([order(2)])
    finally:
        os.ftruncate = real_ftruncate
    with pytest.raises(JournalUnavailableError, match="until a restart"):
        await actor.ask([order(3)])  # stopped for good, even though the disk works again
    await exchange.stop()
    assert (tmp_path / "J" / MARKER).exists()
    _, recovery, tail = Journal(tmp_path, "J").recover(SPEC)
    assert [batch[0].order_id for batch in tail] == [1]  # type: ignore[union-attr]
    assert recovery.unacknowledged_bytes > 0 and not (tmp_path / "J" / MARKER).exists()


# -- one process per directory, one meaning per tick ----------------------------------------

async def test_a_second_gateway_on_the_same_journal_directory_exits_2(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    port = free_port()
    first = await spawn_server(config, "--port", str(port))
    await wait_ready(port)
    code, stderr = await refused_start(tmp_path)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'data'} is in use by pid {first.pid}" in lines[0]
    first.terminate()
    await first.wait()


async def test_a_changed_tick_size_is_refused_with_old_and_new_values(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    port = free_port()
    process = await spawn_server(config, "--port", str(port))
    await wait_ready(port)
    process.terminate()
    await process.wait()
    config.write_text(config.read_text().replace('tick_size = "0.01"', 'tick_size = "0.05"'))
    code, stderr = await refused_start(tmp_path, config=config)
    assert code == 2, stderr
    assert "tick_size 0.01 -> 0.05" in stderr and "J:" in stderr


# -- readiness ----------------------------------------------------------------------------------

async def test_health_answers_and_ready_waits_while_recovering(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "data", "J")
    journal.open()
    order_id = 0
    for _ in range(300):
        journal.append([order(order_id := order_id + 1, 100 + order_id % 500)
                        for _ in range(1_000)])
    journal.close()
    port = free_port()
    process = await spawn_server(config_for(tmp_path), "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(url + "/health") as health:
                    if health.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.025)
        async with session.get(url + "/ready") as ready:
            assert ready.status == 503
            assert (await ready.json())["failing"] == {"J": "recovering its journal"}
        async with session.post(url + "/api/v1/orders", headers={"X-API-Key": ALICE_KEY},
                                json={"symbol": "J", "side": "SELL", "quantity": "1",
                                      "price": "9000"}) as refused:
            assert refused.status == 503 and refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"]["code"] == "NOT_READY"
    await wait_ready(port, timeout=120)
    async with aiohttp.ClientSession() as session, session.get(url + "/stats/J") as stats:
        assert (await stats.json())["open_orders"] == 300_000
    process.terminate()
    await process.wait()
