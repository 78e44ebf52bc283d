"""`lobgw journal inspect DIR` and `lobgw journal replay DIR`: audit what a gateway did.

Both only read: a torn tail is reported, not truncated. Books are rebuilt the way the gateway
rebuilds them, through a symbol actor: the newest snapshot, then the journal's commands.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import msgspec

from lobgw.actors import RowHook, SymbolActor
from lobgw.actors.journal import (
    Journal,
    read_journal,
    read_records,
    read_snapshot,
    segment_indices,
    segment_path,
    snapshot_indices,
    snapshot_path,
)
from lobgw.book.commands import AnyCommand
from lobgw.book.instrument import InstrumentSpec
from lobgw.book.views import BookSnapshot
from lobgw.config import load_config
from lobgw.errors import JournalCorruptError, SnapshotDamagedError
from lobgw.sim.bookout import BookWriter


def _symbols(directory: Path, only: str | None) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    folders = sorted(path for path in directory.iterdir() if path.is_dir()
                     and path.name != "quarantine" and (only is None or path.name == only))
    if not folders:
        raise FileNotFoundError(f"{directory}: no journaled symbol"
                                + (f" named {only}" if only else ""))
    return folders


def _spec(folder: Path, config: str | None) -> InstrumentSpec:
    """A symbol's spec: from its newest snapshot, else the config."""
    found = Journal(folder.parent, folder.name).newest_snapshot()
    if found is not None:
        return found[1].book.spec
    if config is not None and Path(config).exists():
        for spec in load_config(config).symbols:
            if spec.symbol == folder.name:
                return spec
    raise LookupError(f"{folder.name}: no snapshot and not in {config}: pass --config")


class Rebuilt(msgspec.Struct):
    """A book rebuilt from a journal."""

    first_seq: int
    seq: int
    resting: int
    snapshot: BookSnapshot


async def rebuild(spec: InstrumentSpec, snapshot: BookSnapshot | None,
                  batches: list[list[AnyCommand]], after_command: RowHook | None = None
                  ) -> Rebuilt:
    """Apply a journal's batches to its snapshot through a fresh actor (no journal of its
    own); `after_command` sees the book after each command."""
    actor = SymbolActor(spec)
    if snapshot is not None:
        actor.restore(snapshot)
    actor.start()
    try:
        first_seq = await actor.query(lambda book: book.seq)
        for batch in batches:
            rows = [[command] for command in batch] if after_command else [batch]
            await (await actor.send(rows, after_command))
        seq, resting, final = await actor.query(
            lambda book: (book.seq, book.open_order_count(), book.snapshot()))
    finally:
        await actor.stop()
    return Rebuilt(first_seq, seq, resting, final)


def inspect(args: argparse.Namespace) -> int:
    """Print segments, records, snapshots, sequence ranges and the verdict recovery would
    reach, per symbol; exit 3 if any journal is corrupt."""
    corrupt = 0
    for folder in _symbols(args.directory, args.symbol):
        spec = _spec(folder, args.config)
        print(f"{folder.name}")
        for index in snapshot_indices(folder):
            path = snapshot_path(folder, index)
            try:
                snap = read_snapshot(path)
            except SnapshotDamagedError as error:
                print(f"  {path.name}: DAMAGED ({error})")
                continue
            print(f"  {path.name}: seq {snap.book.seq}, "
                  f"{len(snap.book.bids) + len(snap.book.asks)} resting orders, "
                  f"journal from segment {snap.segment}")
        segments = segment_indices(folder)
        for position, index in enumerate(segments):
            path = segment_path(folder, index)
            records = commands = 0
            problem_text = ""
            for offset, payload, problem in read_records(path, position == len(segments) - 1):
                if payload is None:
                    problem_text = f", {problem} at offset {offset}"
                    break
                records += 1
                commands += len(msgspec.msgpack.decode(payload))
            print(f"  {path.name}: {records:,} records, {commands:,} commands, "
                  f"{path.stat().st_size:,} bytes{problem_text}")
        try:
            snapshot, recovery, batches = read_journal(folder, spec)
        except JournalCorruptError as error:
            print(f"  verdict: CORRUPT: {error}")
            corrupt += 1
            continue
        book = asyncio.run(rebuild(spec, snapshot, batches))
        first = book.first_seq + 1 if book.seq > book.first_seq else book.first_seq
        print(f"  events: seq {first}..{book.seq} after the snapshot; {book.resting:,} "
              "resting orders now")
        notes = []
        if recovery.torn_bytes:
            notes.append(f"a torn last record of {recovery.torn_bytes} bytes (a crash "
                         "mid-write; start-up cuts it off and keeps it in quarantine/)")
        if recovery.unacknowledged_bytes:
            notes.append(f"{recovery.unacknowledged_bytes} bytes of a failed write that "
                         "were never acknowledged (start-up cuts them off)")
        print("  verdict: ok" + (": " + "; ".join(notes) if notes else ""))
    return 3 if corrupt else 0


def replay(args: argparse.Namespace) -> int:
    """Rebuild a symbol's book from its journal; optionally write the book after every
    command (LOBSTER layout) and the final snapshot."""
    folder = _symbols(args.directory, args.symbol)[0]
    spec = _spec(folder, args.config)
    snapshot, recovery, batches = read_journal(folder, spec)
    handle = args.book_out.open("w") if args.book_out else None
    writer = BookWriter(handle, args.levels, spec, None) if handle is not None else None
    try:
        book = asyncio.run(rebuild(spec, snapshot, batches,
                                   writer.after_row if writer is not None else None))
        if writer is not None:
            writer.flush()
    finally:
        if handle is not None:
            handle.close()
    if args.snapshot_out:
        args.snapshot_out.write_bytes(msgspec.msgpack.encode(book.snapshot))
    commands = sum(len(batch) for batch in batches)
    print(f"{folder.name}: snapshot seq {recovery.snapshot_seq}, {recovery.records:,} records, "
          f"{commands:,} commands replayed; seq now {book.seq}; "
          f"{book.resting:,} resting orders")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`lobgw journal ...`."""
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    inspect_parser = tools.add_parser("inspect", help="records, sequence ranges, snapshots")
    replay_parser = tools.add_parser(
        "replay", help="rebuild a book from the journal (book after every command)")
    for sub in (inspect_parser, replay_parser):
        sub.add_argument("directory", type=Path, help="the journal directory (journal.directory)")
        sub.add_argument("--symbol", help="only this symbol")
        sub.add_argument("--config", default="config.toml",
                         help="for a symbol's spec when it has no snapshot yet")
    replay_parser.add_argument("--book-out", type=Path, help="write the top levels after "
                               "every command (LOBSTER layout, decimal prices)")
    replay_parser.add_argument("--levels", type=int, default=5)
    replay_parser.add_argument("--snapshot-out", type=Path,
                               help="write the final engine snapshot (msgpack)")
    inspect_parser.set_defaults(tool_handler=inspect)
    replay_parser.set_defaults(tool_handler=replay)


def command(args: argparse.Namespace) -> int:
    """Dispatch `lobgw journal TOOL`."""
    try:
        result: int = args.tool_handler(args)
    except (FileNotFoundError, LookupError, JournalCorruptError) as error:
        print(f"lobgw journal: {error}", file=sys.stderr)
        return 2
    return result
