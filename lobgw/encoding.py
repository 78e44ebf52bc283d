"""msgpack in pieces: a big value encoded a bounded amount at a time.

A snapshot of a big book is megabytes of msgpack. Encoded in one call it would hold the
event loop (or, in a thread, the GIL) for tens of milliseconds; encoded as a stream of
pieces, each a few hundred microseconds of work, the actor can write it between batches.
The pieces concatenated are exactly the bytes of encoding the value at once: msgpack arrays
and maps are a header (with the count) followed by their items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec

ENCODE_CHUNK = 2048
"""Items per encoder call."""

Pieces = Iterator[bytes]
"""Consecutive slices of one msgpack value."""

_encode = msgspec.msgpack.Encoder().encode


def array_pieces(items: Sequence[object], chunk: int = ENCODE_CHUNK) -> Pieces:
    """A msgpack array of `items`, `chunk` items per piece."""
    yield _header(len(items), 0x90, 0xDC, 0xDD)
    for start in range(0, len(items), chunk):
        body = _encode(items[start:start + chunk])
        yield body[_header_size(body[0], 0x90, 0xDC):]


def chunked_array_pieces(count: int, chunks: Iterable[Sequence[object]]) -> Pieces:
    """A msgpack array of `count` items that arrive in `chunks` (made lazily)."""
    yield _header(count, 0x90, 0xDC, 0xDD)
    for items in chunks:
        if items:
            body = _encode(items)
            yield body[_header_size(body[0], 0x90, 0xDC):]


def map_pieces(fields: Sequence[tuple[str, object | Callable[[], Pieces]]]) -> Pieces:
    """A msgpack map (how a Struct is encoded) of `fields`: a plain value is encoded as is,
    a callable gives the pieces of a value encoded in pieces."""
    yield _header(len(fields), 0x80, 0xDE, 0xDF)
    for name, value in fields:
        yield _encode(name)
        if callable(value):
            yield from value()
        else:
            yield _encode(value)


def encode_array(items: Sequence[object], chunk: int = ENCODE_CHUNK) -> msgspec.Raw:
    """`array_pieces` joined (for tests and small values)."""
    return msgspec.Raw(b"".join(array_pieces(items, chunk)))


def _header(count: int, fix: int, sixteen: int, thirty_two: int) -> bytes:
    if count < 16:
        return bytes([fix | count])
    if count < 1 << 16:
        return bytes([sixteen]) + count.to_bytes(2, "big")
    return bytes([thirty_two]) + count.to_bytes(4, "big")


def _header_size(first: int, fix: int, sixteen: int) -> int:
    return 1 if first & 0xF0 == fix else 3 if first == sixteen else 5
