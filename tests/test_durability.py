"""Crash recovery with real processes and real files: kill -9 under load, damage, full disks."""

from __future__ import annotations

import asyncio
import random
import resource
import shutil
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import websockets

from lobgw.actors.journal import SnapshotFile, read_journal, read_records
from lobgw.book import BookSnapshot, Engine
from lobgw.book.commands import CancelOrder, SubmitOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.client import ClientError, LobgwClient
from tests.conftest import ALICE_KEY, BOB_KEY, spawn_server
from tests.test_serve import CONFIG as SERVE_CONFIG
from tests.test_serve import free_port, wait_ready

CONFIG = SERVE_CONFIG.replace(
    '[journal]\ndirectory = "JOURNAL_DIR"',
    '[journal]\ndirectory = "DIRECTORY"\nfsync = "batch"\n'
    'snapshot_every_commands = SNAPSHOT_EVERY\n\n[logging]\naccess_log = false')
SPEC = InstrumentSpec("BTC-USD", Decimal("0.5"), Decimal("0.01"))


def write_config(tmp_path: Path, snapshot_every: int = 1_000_000) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.replace("DIRECTORY", str(tmp_path / "data"))
                    .replace("SNAPSHOT_EVERY", str(snapshot_every)))
    return path


async def start(config: Path, port: int, *extra: str, preexec: Any = None
                ) -> asyncio.subprocess.Process:
    process = await spawn_server(config, "--port", str(port), *extra, preexec=preexec)
    await wait_ready(port)
    return process


async def stop(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> str:
    process.send_signal(sig)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    return stderr.decode()


class Trader:
    """Places and cancels orders as fast as acks come back; remembers what was acknowledged."""

    def __init__(self, key: str, seed: int) -> None:
        self.key = key
        self.rng = random.Random(seed)
        self.placed: set[int] = set()
        self.canceled: set[int] = set()

    async def run(self, url: str) -> None:
        try:
            client = await LobgwClient.connect(url, api_key=self.key, reconnect=False)
        except OSError:
            return
        live: list[int] = []
        try:
            while True:
                if live and self.rng.random() < 0.35:
                    order_id = live.pop(self.rng.randrange(len(live)))
                    try:
                        await client.cancel(order_id=order_id)
                        self.canceled.add(order_id)
                    except ClientError:
                        pass  # filled meanwhile
                    continue
                side = self.rng.choice(["BUY", "SELL"])
                price = 100 + self.rng.randint(-6, 6) * 0.5
                try:
                    ack = await client.place("BTC-USD", side,
                                             f"{self.rng.randint(1, 300) / 100}",
                                             price=f"{price:.1f}")
                except ClientError as refused:
                    if refused.code in ("STP", "OVERLOADED"):
                        continue  # an engine refusal, not a broken connection
                    raise
                self.placed.add(ack.order.order_id)
                if ack.order.status.value in ("NEW", "PARTIALLY_FILLED"):
                    live.append(ack.order.order_id)
        except (ConnectionError, websockets.ConnectionClosed, ClientError, OSError):
            return


def expected_state(journal_copy: Path) -> tuple[BookSnapshot, set[int], set[int]]:
    """The book a fresh engine rebuilds from the journal, and the ids it placed and cancelled."""
    snapshot, _, batches = read_journal(journal_copy / "BTC-USD", SPEC)
    engine = Engine(SPEC) if snapshot is None else Engine.restore(snapshot)
    placed: set[int] = {o.order_id for o in engine.snapshot().bids + engine.snapshot().asks}
    canceled: set[int] = set()
    for batch in batches:
        for command in batch:
            if isinstance(command, SubmitOrder):
                placed.add(command.order_id)
            elif isinstance(command, CancelOrder):
                canceled.add(command.order_id)
        engine.apply_batch(batch)
    return engine.snapshot(), placed, canceled


async def open_orders(url: str) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as session:
        for key in (ALICE_KEY, BOB_KEY):
            async with session.get(url + "/api/v1/orders", headers={"X-API-Key": key}) as reply:
                for order in await reply.json():
                    found[order["order_id"]] = order
    return found


async def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(42)
    for round_number, snapshot_every in enumerate((1_000_000, 300, 300)):
        config = write_config(tmp_path, snapshot_every)
        port = free_port()
        process = await start(config, port)
        url = f"http://127.0.0.1:{port}"
        traders = [Trader(ALICE_KEY if i % 2 else BOB_KEY, round_number * 10 + i)
                   for i in range(4)]
        tasks = [asyncio.create_task(t.run(url.replace("http", "ws") + "/ws")) for t in traders]
        await asyncio.sleep(0.6 + rng.random())
        process.kill()  # SIGKILL in the middle of the flow
        await process.wait()
        await asyncio.gather(*tasks)
        placed = set().union(*(t.placed for t in traders))
        canceled = set().union(*(t.canceled for t in traders))
        assert len(placed) > 50, "the flow was running"
        copy = tmp_path / f"copy{round_number}"
        shutil.copytree(tmp_path / "data", copy)
        book, journaled, journal_cancels = expected_state(copy)
        if round_number == 0:  # the whole history is in the journal: nothing acked is missing
            assert placed <= journaled
            assert canceled <= journal_cancels
        process = await start(config, port)
        recovered = await open_orders(url)
        expected = {o.order_id: o for o in book.bids + book.asks}
        assert set(recovered) == set(expected)
        for order_id, order in recovered.items():
            assert order["remaining_quantity"] == SPEC.format_quantity(expected[order_id].remaining)
        assert not (canceled & set(recovered)), "an acknowledged cancel came back"
        stderr = await stop(process)
        assert "Traceback" not in stderr
        final = max((tmp_path / "data" / "BTC-USD").glob("snapshot-*.snap"))
        (_, payload, _), = list(read_records(final, last_segment=False))
        assert payload is not None
        saved = msgspec.msgpack.decode(payload, type=SnapshotFile).book
        assert msgspec.msgpack.encode(saved) == msgspec.msgpack.encode(book)


async def test_sequence_numbers_continue_across_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    ws_url = f"ws://127.0.0.1:{port}/ws"
    process = await start(config, port)
    async with await LobgwClient.connect(ws_url, api_key=ALICE_KEY) as alice:
        await alice.subscribe("book", "BTC-USD")
        for price in ("99", "98", "97"):
            await alice.place("BTC-USD", "BUY", "1", price=price)
        await alice.next_message("book_update")
        while alice.books["BTC-USD"].seq < 3:
            await alice.next_message("book_update")
        last_seen = alice.books["BTC-USD"].seq
    process.kill()
    await process.wait()
    process = await start(config, port)
    async with await LobgwClient.connect(ws_url, api_key=BOB_KEY) as bob:
        await bob.subscribe("book", "BTC-USD")
        snapshot = await bob.next_message("book_snapshot")
        assert snapshot.seq == last_seen == 3
        assert [level[0] for level in snapshot.bids] == ["99.0", "98.0", "97.0"]
        await bob.place("BTC-USD", "SELL", "0.5", price="99")
        update = await bob.next_message("book_update")
        assert update.prev_seq == 3 and update.seq > 3
        assert bob.book_errors == []
    await stop(process)


async def test_corrupt_middle_record_refuses_to_start_unless_repaired(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    process = await start(config, port)
    async with await LobgwClient.connect(f"ws://127.0.0.1:{port}/ws", api_key=ALICE_KEY) as c:
        for price in ("90", "91", "92", "93"):
            await c.place("BTC-USD", "BUY", "1", price=price)
    process.kill()
    await process.wait()
    segment = tmp_path / "data" / "BTC-USD" / "journal-00000000.log"
    data = bytearray(segment.read_bytes())
    data[12] ^= 0xFF  # inside the first record's payload
    segment.write_bytes(bytes(data))
    refused = await spawn_server(config, "--port", str(port))
    _, stderr = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 3
    assert str(segment) in stderr.decode() and "offset 0" in stderr.decode()
    assert "--repair" in stderr.decode()
    process = await start(config, port, "--repair")
    quarantine = list((tmp_path / "data" / "BTC-USD" / "quarantine").iterdir())
    assert len(quarantine) == 1 and quarantine[0].stat().st_size == len(data)
    assert await open_orders(f"http://127.0.0.1:{port}") == {}
    await stop(process)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (3_000, resource.RLIM_INFINITY))  # soft limit


async def test_unwritable_journal_refuses_orders_until_it_can_write(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await start(config, port, preexec=_limit_file_size)
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        async def place(price: str) -> tuple[int, Any]:
            async with session.post(url + "/api/v1/orders", headers={"X-API-Key": ALICE_KEY},
                                    json={"symbol": "BTC-USD", "side": "BUY", "quantity": "1",
                                          "price": price}) as reply:
                return reply.status, await reply.json()

        for attempt in range(100):
            status, body = await place(str(50 + attempt * 0.5))
            statuses.append(status)
            if status == 503:
                assert body["error"]["code"] == "JOURNAL_UNAVAILABLE"
                break
        assert statuses[-1] == 503 and statuses[:-1] == [201] * (len(statuses) - 1)
        accepted = len(statuses) - 1
        async with session.get(url + "/metrics") as reply:
            assert 'lobgw_journal_available{symbol="BTC-USD"} 0' in await reply.text()
        async with session.get(url + "/ready") as reply:  # a load balancer must look away
            assert reply.status == 503
            assert (await reply.json())["failing"] == {
                "BTC-USD": "its journal cannot be written"}
        assert len(await open_orders(url)) == accepted  # the refused order is not in the book
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, unlimited)  # the disk is back
        status, body = await place("10")
        assert status == 201, body
        async with session.get(url + "/metrics") as reply:
            assert 'lobgw_journal_available{symbol="BTC-USD"} 1' in await reply.text()
        async with session.get(url + "/ready") as reply:
            assert reply.status == 200
    stderr = await stop(process)
    assert "journal write failed" in stderr and "writable again" in stderr
    process = await start(config, port)
    assert len(await open_orders(url)) == accepted + 1
    await stop(process)

