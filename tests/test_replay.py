"""Replay readers on the real sample files, book-out against LOBSTER's own book, bad rows."""

from __future__ import annotations

import csv
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from lobgw.book.commands import CancelOrder, SubmitOrder
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.types import OrderType, Side
from lobgw.sim.records import (
    BadRowError,
    Kind,
    databento_spec,
    databento_tick,
    iso_to_ns,
    lobster_spec,
    read_csv,
    read_databento,
    read_lobster,
)
from lobgw.sim.replay import Pacer, replay_file
from lobgw.sim.translate import Translator

DATA = Path(__file__).parent / "data"
AMZN5_MESSAGES = DATA / "AMZN_2012-06-21_34200000_57600000_message_5_subset.csv"
AMZN5_BOOK = DATA / "AMZN_2012-06-21_34200000_57600000_orderbook_5_subset.csv"
AMZN1 = DATA / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
EXCEL = DATA / "AMZN_2012-06-21_excel-edited_message_1_head2000.csv"
TSLA = DATA / "TSLA_2015-01-07_34200000_57600000_message_10_SAMPLE.csv"
AMZN2021 = DATA / "AMZN_2021-04-12_34200000_57600000_message_10.csv"
CLX5 = DATA / "CLX5_mbo.csv"


def book_rows(path: Path) -> list[list[int]]:
    with path.open(newline="") as handle:
        return [[int(value) for value in row] for row in csv.reader(handle)]


def levels(row: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    asks = {row[i]: row[i + 1] for i in range(0, len(row), 4) if row[i + 1]}
    bids = {row[i + 2]: row[i + 3] for i in range(0, len(row), 4) if row[i + 3]}
    return asks, bids


async def test_lobster_level5_book_out_matches_lobsters_own_book(tmp_path: Path) -> None:
    """Seeded from LOBSTER's first orderbook row, the replayed book must equal LOBSTER's on
    every row for every level we can know. A level-5 message file only has events inside the
    top 5 levels, so a price is comparable while it has stayed inside the window since the
    seed, or since an add created it there as a brand-new level (never seen in the window
    before); a level that left the window missed events and is not compared again."""
    out = tmp_path / "book.csv"
    summary = await replay_file(AMZN5_MESSAGES, "lobster", lobster_spec("AMZN"),
                                initial_book=AMZN5_BOOK, book_out=out, levels=5,
                                progress=False)
    ours, theirs = book_rows(out), book_rows(AMZN5_BOOK)
    assert len(ours) == len(theirs) == summary.rows == 1000
    with AMZN5_MESSAGES.open(newline="") as handle:
        messages = list(csv.reader(handle))
    trusted = [set(levels(theirs[0])[0]), set(levels(theirs[0])[1])]
    seen = [set(trusted[0]), set(trusted[1])]
    compared = mismatches = 0
    for row in range(len(theirs)):
        real, replayed = levels(theirs[row]), levels(ours[row])
        if row:
            _, kind, _, size_text, price_text, direction = messages[row][:6]
            added_price, added_size = int(price_text), int(size_text)
            side = 0 if direction == "-1" else 1
            for index in (0, 1):
                trusted[index] = {p for p in trusted[index] if p in real[index]}
            if kind == "1" and added_price in real[side] and added_price not in seen[side] \
                    and real[side][added_price] == added_size:
                trusted[side].add(added_price)
            for index in (0, 1):
                seen[index] |= set(real[index])
        for index in (0, 1):
            for price, size in real[index].items():
                if price in trusted[index]:
                    compared += 1
                    mismatches += replayed[index].get(price) != size
    assert mismatches == 0
    assert compared > 3000  # of 10,000 window levels; the rest cannot be known
    assert ours[:28] == theirs[:28]  # until a level from outside the window enters (row 29)


async def test_tsla_sample_with_a_cross_trade() -> None:
    records = list(read_lobster(TSLA))
    assert len(records) == 50
    cross = records[2]
    assert (cross.kind, cross.order_id, cross.quantity) == (Kind.PRINT, -1, 19725)
    summary = await replay_file(TSLA, "lobster", lobster_spec("TSLA"), progress=False)
    assert summary.rows == 50
    assert summary.translation.prints == sum(1 for r in records if r.kind is Kind.PRINT)
    assert summary.translation.unknown_orders > 0  # executions of orders from before 9:30


def test_excel_edited_file_reads_like_the_original() -> None:
    edited = list(read_lobster(EXCEL))
    original = [record for record, _ in zip(read_lobster(AMZN1), range(2000), strict=False)]
    assert len(edited) == len(original) == 2000
    for a, b in zip(edited, original, strict=True):
        assert (a.kind, a.order_id, a.side, a.price, a.quantity) == (
            b.kind, b.order_id, b.side, b.price, b.quantity)
        assert abs(a.timestamp - b.timestamp) <= 5_000  # times rounded to 5 decimals
    assert EXCEL.read_bytes().count(b"\r\n") == 2000  # header + rows, no final newline


async def test_seven_column_file_with_a_cross() -> None:
    records = list(read_lobster(AMZN2021))
    assert len(records) == 40_674
    summary = await replay_file(AMZN2021, "lobster", lobster_spec("AMZN"), progress=False)
    assert summary.rows == 40_674
    assert summary.translation.prints == sum(1 for r in records if r.kind is Kind.PRINT)
    assert summary.trades > 0


async def test_databento_file_starting_mid_session() -> None:
    assert databento_tick(CLX5) == Decimal("0.01")
    spec = databento_spec("CLX5", CLX5)
    records = list(read_databento(CLX5, spec))
    assert len(records) == 38_212
    assert records[0].timestamp == iso_to_ns("2025-09-24 19:30:00.000860311+00:00")
    # Independently: cancels and modifies naming orders the file never added.
    added: set[int] = set()
    unknown = 0
    with CLX5.open(newline="") as handle:
        for row in csv.DictReader(handle):
            order_id = int(row["order_id"])
            if row["action"] == "A":
                added.add(order_id)
            elif row["action"] in "CM" and order_id not in added:
                unknown += 1
    summary = await replay_file(CLX5, "databento-mbo", spec, progress=False)
    assert summary.rows == 38_212
    assert summary.translation.unknown_orders == unknown > 2000
    assert summary.translation.prints == sum(1 for r in records if r.kind is Kind.PRINT)


CSV_SPEC = InstrumentSpec("CSV", Decimal("0.01"), Decimal("0.1"))


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("ts,msg_type,side,price,qty,order_id,tif,flags,account\n"
                    + "\n".join(rows) + "\n")
    return path


async def test_an_add_that_would_cross_removes_the_stale_orders_it_meets(
        tmp_path: Path) -> None:
    """LOBSTER adds never cross: one that would has met orders whose deletion the file left out
    (a level-1 file shows nothing beyond level 1). They go; no trade that never happened."""
    path = tmp_path / "stale.csv"
    path.write_text("34200.1,1,1,5,1000000,-1\n"   # sell 5 @ 100.00
                    "34200.2,1,2,3,1000100,-1\n"   # sell 3 @ 100.01
                    "34200.3,1,3,4,1000200,1\n"    # buy 4 @ 100.02: both sells are stale
                    "34200.4,4,3,4,1000200,1\n")   # and the buy executes in full
    out = tmp_path / "book.csv"
    summary = await replay_file(path, "lobster", lobster_spec("X"), book_out=out, levels=1,
                                progress=False)
    assert summary.translation.stale_removed == 2
    assert summary.translation.clipped == 0
    assert summary.trades == 1  # only the execution in the data
    assert out.read_text().splitlines()[2] == "9999999999,0,1000200,4"
    # The whole AMZN day: without this repair 11,985 trades were invented and 4,422 historical
    # executions then found their order short; now every execution finds its whole quantity.
    day = await replay_file(AMZN1, "lobster", lobster_spec("AMZN"), progress=False)
    assert day.translation.stale_removed > 0 and day.translation.clipped == 0
    added: set[int] = set()
    executions = 0  # of orders the file added: each must print exactly one trade
    for record in read_lobster(AMZN1):
        if record.kind is Kind.ADD:
            added.add(record.order_id)
        elif record.kind is Kind.EXECUTE and record.order_id in added:
            executions += 1
    assert day.trades == executions
    # csv adds may cross: there the same flow trades
    csv_path = write_csv(tmp_path / "cross.csv", ["1,ADD,SELL,100.00,5,1,,,",
                                                  "2,ADD,BUY,100.02,4,3,,,"])
    crossed = await replay_file(csv_path, "csv", CSV_SPEC, progress=False)
    assert crossed.trades == 1 and crossed.translation.stale_removed == 0


async def test_csv_round_trip(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "flow.csv", [
        "1,ADD,SELL,100.05,1.5,1,GTC,,alice",
        "2,ADD,SELL,100.10,2,2,GTC,POST_ONLY,alice",
        "3,ADD,BUY,99.90,1,3,GTC,,bob",
        "4,AMEND,,100.00,,3,,,",
        "5,MARKET,BUY,,2.0,4,IOC,,bob",
        "6,CANCEL,,,,2,,,",
    ])
    records = list(read_csv(path, CSV_SPEC))
    commands: list[object] = []
    translator = Translator(strict_unknown=True)
    for record in records:
        commands += translator.translate(record)
    first = commands[0]
    assert isinstance(first, SubmitOrder)
    assert (first.order_id, first.side, first.price, first.quantity, first.account) == (
        1, Side.SELL, 10005, 15, "alice")
    assert isinstance(commands[1], SubmitOrder) and commands[1].post_only
    assert isinstance(commands[-1], CancelOrder) and commands[-1].order_id == 2
    out = tmp_path / "book.csv"
    summary = await replay_file(path, "csv", CSV_SPEC, book_out=out, levels=2, progress=False)
    assert summary.rows == 6 and summary.trades == 2
    final = out.read_text().splitlines()[-1]
    assert final == "9999999999,0,100.00,1.0,9999999999,0,-9999999999,0"


async def test_bad_rows_stop_with_the_line_or_are_skipped(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", [
        "1,ADD,SELL,100.05,1,1,,,",
        "2,ADD,SELL,100.051,1,2,,,",   # off the tick grid
        "3,CANCEL,,,,77,,,",           # an order never added
        "4,JUMP,BUY,1,1,3,,,",         # unknown type
        "5,ADD,BUY,99,1,4,,,",
    ])
    with pytest.raises(BadRowError) as stopped:
        await replay_file(path, "csv", CSV_SPEC, progress=False)
    assert stopped.value.line == 3
    assert "PRICE_OFF_TICK" in stopped.value.reason
    summary = await replay_file(path, "csv", CSV_SPEC, on_error="skip", progress=False)
    assert summary.rows == 5 and summary.skipped_rows == 3
    assert summary.errors == {"PRICE_OFF_TICK": 1, "unknown order": 1, "unparseable": 1}
    process = subprocess.run(
        [sys.executable, "-m", "lobgw", "replay", str(path), "--format", "csv",
         "--symbol", "NOPE"], capture_output=True, text=True, timeout=60)
    assert process.returncode == 2 and "not in the config" in process.stderr


def test_lob_replay_command_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "book.csv"
    process = subprocess.run(
        [sys.executable, "-c", "import sys; from lobgw.cli import replay_main; "
         "sys.argv[0] = 'lob-replay'; sys.exit(replay_main())",
         str(AMZN5_MESSAGES), "--format", "lobster", "--symbol", "AMZN5",
         "--initial-book", str(AMZN5_BOOK), "--book-out", str(out), "--levels", "5"],
        capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    assert "rows" in process.stdout and "1,000" in process.stdout
    assert out.read_text().splitlines()[0] == AMZN5_BOOK.read_text().splitlines()[0]


def test_lobster_reader_refuses_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("34200.1,1,5,10,100,1\n34200.2,9,5,10,100,1\n")
    with pytest.raises(BadRowError) as caught:
        list(read_lobster(bad))
    assert caught.value.line == 2 and "unknown type" in caught.value.reason
    bad.write_text("34200.1,1,5,10,100,0\n")
    with pytest.raises(BadRowError, match="direction"):
        list(read_lobster(bad))


def test_iso_timestamps_in_their_forms() -> None:
    assert iso_to_ns("2025-09-24 19:30:00.000860311+00:00") == 1_758_742_200_000_860_311
    assert iso_to_ns("2025-09-24T19:30:00Z") == 1_758_742_200_000_000_000
    assert iso_to_ns("2025-09-24 20:30:00.5+01:00") == 1_758_742_200_500_000_000
    assert iso_to_ns("1758742200000860311") == 1_758_742_200_000_860_311


def test_databento_rows_in_every_form_read_alike(tmp_path: Path) -> None:
    """The fast path (plain rows, cached seconds and prices) and the careful one (quotes,
    padding, other timestamp forms, CRLF) give the same records; bad rows name the reason."""
    spec = InstrumentSpec("CLX5", Decimal("0.01"), Decimal(1))
    header = "ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id," \
             "order_id,flags,ts_in_delta,sequence,symbol"
    plain = [
        "2025-09-24 19:30:00.000860311+00:00,160,1,1,A,A,64.83,1,26,11,128,0,1,CLX5",
        "2025-09-24 19:30:00.100000000+00:00,160,1,1,A,B,64.80,3,26,12,128,0,2,CLX5",
        "2025-09-24 19:30:01.000000001+00:00,160,1,1,C,A,64.83,1,26,11,128,0,3,CLX5",
        "2025-09-24 19:30:01.5+00:00,160,1,1,T,B,64.81,2,26,0,128,0,4,CLX5",
        "2025-09-24 19:30:02.000000000+00:00,160,1,1,R,N,,0,26,0,8,0,5,CLX5",
    ]
    varied = [
        '"2025-09-24 19:30:00.000860311+00:00",160,1,1,"A",A,64.83,1,26,11,128,0,1,"CL,X5"',
        "2025-09-24T19:30:00.1Z,160,1,1, A , B ,64.80,3,26,12,128,0,2,CLX5",
        "1758742201000000001,160,1,1,C,A, 64.830 ,1,26,11,128,0,3,CLX5",
        "2025-09-24 20:30:01.500000000+01:00,160,1,1,T,B,64.81,2,26,0,128,0,4,CLX5",
        "2025-09-24 19:30:02+00:00,160,1,1,R,N,,0,26,0,8,0,5,CLX5",
    ]
    fast = tmp_path / "plain.csv"
    fast.write_text("\n".join([header, *plain]) + "\n")
    careful = tmp_path / "varied.csv"
    careful.write_bytes(("\r\n".join([header, *varied])).encode())  # CRLF, no final newline
    expected = list(read_databento(fast, spec))
    assert [r.kind for r in expected] == [Kind.ADD, Kind.ADD, Kind.REDUCE, Kind.PRINT,
                                          Kind.CLEAR]
    second = 1_758_742_200_000_000_000  # 2025-09-24 19:30:00 UTC
    assert [r.timestamp - second for r in expected] == [
        860_311, 100_000_000, 1_000_000_001, 1_500_000_000, 2_000_000_000]
    assert expected[1].price == 6480 and expected[1].side is Side.BUY and expected[3].aggressor
    assert list(read_databento(careful, spec)) == expected
    narrow = tmp_path / "narrow.csv"  # only the columns read, order_id last
    narrow.write_text("ts_event,action,side,price,size,order_id\n" + "\n".join(
        ",".join(row.split(",")[i] for i in (0, 4, 5, 6, 7, 9)) for row in plain) + "\n\n")
    assert [msgspec.structs.replace(r, line=0) for r in read_databento(narrow, spec)] == [
        msgspec.structs.replace(r, line=0) for r in expected]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([header, plain[0].replace(",A,A,", ",Q,A,"),
                              plain[0].replace(",A,A,", ",A,X,"),
                              plain[0].replace("64.83", "64.835"),
                              plain[0].replace(".000860311", ".0008603x1"),
                              plain[0][:40]]) + "\n")
    reasons = [r.error for r in read_databento(bad, spec, skip_bad=True)]
    assert len(reasons) == 5 and all(reason is not None for reason in reasons)
    assert "unknown action 'Q'" in str(reasons[0]) and "unknown side 'X'" in str(reasons[1])
    assert "price" in str(reasons[2]) and "fraction" in str(reasons[3])
    with pytest.raises(BadRowError) as caught:
        list(read_databento(bad, spec))
    assert caught.value.line == 2


async def test_speed_paces_rows_to_data_time(tmp_path: Path) -> None:
    pacer = Pacer(10)  # ten times faster than the data
    assert pacer.delay(5_000_000_000) == 0.0  # the first row goes at once
    assert 0.05 < pacer.delay(6_000_000_000) <= 0.1  # one data second later: 0.1 s later
    path = write_csv(tmp_path / "paced.csv", [
        "0,ADD,SELL,100.05,1,1,,,", "100000000,ADD,SELL,100.10,1,2,,,",
        "200000000,CANCEL,,,,1,,,"])
    paced = await replay_file(path, "csv", CSV_SPEC, speed=1, progress=False)
    assert paced.rows == 3 and paced.seconds >= 0.18  # 0.2 s of data at speed 1


async def test_csv_stops_icebergs_gtd_and_day_expire_in_data_time(tmp_path: Path) -> None:
    path = tmp_path / "types.csv"
    path.write_text("ts,msg_type,side,price,qty,order_id,tif,flags,account,stop_price,"
                    "display_qty,expire_ts\n" + "\n".join([
                        "1,ADD,SELL,100.10,5,1,GTC,,alice,,1,",     # an iceberg showing 1
                        "2,ADD,BUY,99.90,1,2,GTD,,bob,,,6",         # good until ts 6
                        "3,STOP,BUY,,1,3,GTC,,bob,100.10,,",        # waits for 100.10
                        "4,STOP_LIMIT,SELL,99.00,1,7,GTC,,bob,99.50,,",
                        "5,ADD,BUY,100.10,1,4,IOC,,carol,,,",       # trades, releases 3
                        "6,ADD,BUY,99.80,1,5,DAY,,bob,,,10",        # 2 expires first
                        "11,ADD,SELL,100.20,1,6,GTC,,alice,,,",     # 5's day ended first
                    ]) + "\n")
    records = list(read_csv(path, CSV_SPEC))
    assert [r.kind for r in records] == [Kind.ORDER, Kind.ORDER, Kind.ORDER, Kind.ORDER,
                                         Kind.ADD, Kind.ORDER, Kind.ADD]
    translator = Translator(strict_unknown=True)
    commands = [translator.translate(record) for record in records]
    assert isinstance(commands[2][0], SubmitOrder)
    assert (commands[2][0].order_type, commands[2][0].stop_price) == (OrderType.STOP, 10010)
    assert isinstance(commands[3][0], SubmitOrder)
    assert commands[3][0].order_type is OrderType.STOP_LIMIT
    assert [type(c).__name__ for c in commands[5]] == ["ExpireOrders", "SubmitOrder"]
    assert [type(c).__name__ for c in commands[6]] == ["ExpireOrders", "SubmitOrder"]
    out = tmp_path / "book.csv"
    summary = await replay_file(path, "csv", CSV_SPEC, book_out=out, levels=1, progress=False)
    assert summary.rows == 7 and summary.trades == 2  # the taker's and the released stop's
    rows = out.read_text().splitlines()
    # ask, ask size, bid, bid size after each row: only the iceberg's display is shown, the
    # stops never; the GTD bid goes at ts 6 and the DAY bid at ts 11, in data time.
    assert [row.split(",")[:4] for row in rows] == [
        ["100.10", "1.0", "-9999999999", "0"],
        ["100.10", "1.0", "99.90", "1.0"],
        ["100.10", "1.0", "99.90", "1.0"],
        ["100.10", "1.0", "99.90", "1.0"],
        ["100.10", "1.0", "99.90", "1.0"],
        ["100.10", "1.0", "99.80", "1.0"],
        ["100.10", "1.0", "-9999999999", "0"],
    ]


@pytest.mark.parametrize(("row", "reason"), [
    ("1,STOP,BUY,,1,3,GTC,,bob,,,", "STOP needs a stop_price"),
    ("1,STOP_LIMIT,BUY,,1,3,GTC,,bob,100.10,,", "STOP_LIMIT needs a price"),
    ("1,ADD,BUY,100.00,1,3,GTC,,bob,100.10,,", "only STOP and STOP_LIMIT"),
    ("1,ADD,BUY,100.00,1,3,GTD,,bob,,,", "expire_ts is required"),
    ("1,ADD,BUY,100.00,1,3,GTC,,bob,,,9", "expire_ts is required"),
    ("1,ADD,BUY,100.00,1,3,GTC,,bob,,2,", "display_qty must be"),
    ("1,MARKET,BUY,,1,3,DAY,,bob,,,9", "a market order cannot be GTD or DAY"),
    ("1,ADD,BUY,100.00,1,3,GTC,,bob,100.105,,", "PRICE_OFF_TICK: stop_price"),
])
def test_csv_order_type_columns_refuse_bad_rows_with_the_reason(
        tmp_path: Path, row: str, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ts,msg_type,side,price,qty,order_id,tif,flags,account,stop_price,"
                    f"display_qty,expire_ts\n{row}\n")
    with pytest.raises(BadRowError) as refused:
        list(read_csv(path, CSV_SPEC))
    assert reason in str(refused.value) and "bad.csv:2:" in str(refused.value)
