"""`lobgw journal inspect DIR` and `lobgw journal replay DIR`: audit what a gateway did.

Both only read: a torn tail is reported, not truncated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from lobgw.journal import (
    Journal,
    JournalCorruptError,
    SnapshotFile,
    _indices,
    _segment_path,
    _snapshot_path,
    read_journal,
    read_records,
)
from lobgw.sim.replay import BookWriter


def _symbols(directory: Path, only: str | None) -> list[Path]:
    folders = sorted(path for path in directory.iterdir() if path.is_dir()
                     and (only is None or path.name == only))
    if not folders:
        raise FileNotFoundError(f"{directory}: no journaled symbol"
                                + (f" named {only}" if only else ""))
    return folders


def _spec(folder: Path, config: str | None) -> object:
    """A symbol's spec: from its newest snapshot, else the config."""
    found = Journal(folder.parent, folder.name).newest_snapshot()
    if found is not None:
        return found[1].book.spec
    from lobgw.config import load_config

    if config is not None and Path(config).exists():
        for spec in load_config(config).symbols:
            if spec.symbol == folder.name:
                return spec
    raise LookupError(f"{folder.name}: no snapshot and not in {config}: pass --config")


def inspect(args: argparse.Namespace) -> int:
    """Print segments, records, snapshots and sequence ranges per symbol."""
    for folder in _symbols(args.directory, args.symbol):
        spec = _spec(folder, args.config)
        print(f"{folder.name}")
        for index in _indices(folder, "snapshot", ".snap"):
            path = _snapshot_path(folder, index)
            for _, payload, problem in read_records(path, last_segment=False):
                if payload is None:
                    print(f"  {path.name}: DAMAGED ({problem})")
                    break
                snap = msgspec.msgpack.decode(payload, type=SnapshotFile)
                print(f"  {path.name}: seq {snap.book.seq}, "
                      f"{len(snap.book.bids) + len(snap.book.asks)} resting orders, "
                      f"journal from segment {snap.segment}")
                break
        segments = _indices(folder, "journal", ".log")
        for position, index in enumerate(segments):
            path = _segment_path(folder, index)
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
        engine, recovery, batches = read_journal(folder, spec)  # type: ignore[arg-type]
        first_seq = engine.seq
        for batch in batches:
            engine.apply_batch(batch)
        print(f"  events: seq {first_seq + 1 if engine.seq > first_seq else first_seq}"
              f"..{engine.seq} after the snapshot; {engine.open_order_count():,} resting "
              f"orders now" + (f"; torn tail {recovery.torn_bytes} bytes"
                              if recovery.torn_bytes else ""))
    return 0


def replay(args: argparse.Namespace) -> int:
    """Rebuild a symbol's book from its journal; optionally write the book after every
    command (LOBSTER layout) and the final snapshot."""
    folder = _symbols(args.directory, args.symbol)[0]
    spec = _spec(folder, args.config)
    engine, recovery, batches = read_journal(folder, spec)  # type: ignore[arg-type]
    writer = None
    handle = args.book_out.open("w") if args.book_out else None
    if handle is not None:
        writer = BookWriter(handle, args.levels, engine.spec, None)
    commands = 0
    for batch in batches:
        for command in batch:
            engine.apply(command)
            commands += 1
            if writer is not None:
                writer.pending.append(writer.capture(engine))
        if writer is not None:
            writer.flush()
    if handle is not None:
        handle.close()
    if args.snapshot_out:
        args.snapshot_out.write_bytes(msgspec.msgpack.encode(engine.snapshot()))
    print(f"{folder.name}: snapshot seq {recovery.snapshot_seq}, {recovery.records:,} records, "
          f"{commands:,} commands replayed; seq now {engine.seq}; "
          f"{engine.open_order_count():,} resting orders")
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

