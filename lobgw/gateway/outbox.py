"""Outgoing WebSocket frames: encoded once, queued per connection, written in batches.

A market-data message goes to many connections. It is encoded into a complete text frame
once (`encode_frame`) and the same bytes are queued in every subscriber's `Outbox`. Outboxes
with something queued are flushed together by the `Flusher` (replies at the end of the loop
iteration, market data within `runtime.market_data_flush_ms`), each with a single
`writelines` — one system call for everything that accumulated, instead of a task wake-up
and a system call per message per subscriber. While a socket's send buffer is
above `HIGH_WATER` its outbox holds frames and waits for it to drain; an outbox that fills up
meanwhile (`capacity` frames) is a slow consumer and is closed by its connection.

aiohttp's own writer sends one frame per call, so frames are built here: a final, unmasked,
uncompressed text frame is a 2-, 4- or 10-byte header and the payload (RFC 6455 §5.2).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

import msgspec

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack
_encode = msgspec.json.Encoder().encode


def text_frame(payload: bytes) -> bytes:
    """One complete server-to-client text frame carrying `payload`."""
    size = len(payload)
    if size < 126:
        return _HEADER_SHORT(0x81, size) + payload
    if size < 65536:
        return _HEADER_MEDIUM(0x81, 126, size) + payload
    return _HEADER_LONG(0x81, 127, size) + payload


def encode_frame(message: Any) -> bytes:
    """JSON-encode a message into a ready-to-write text frame."""
    return text_frame(_encode(message))


class Flusher:
    """Flushes outboxes: replies at the end of this loop iteration, market data on a timer.

    A reply is flushed as soon as the loop is free (with whatever market data is queued in
    the same outbox). Market data alone waits up to `interval` seconds so that one system
    call carries every frame that accumulated: with hundreds of subscribers the send calls,
    not the messages, are what costs. `interval=0` flushes market data like replies.
    """

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self.pending: list[Outbox] = []
        self.scheduled = False
        self.timed: list[Outbox] = []
        self.timer: asyncio.TimerHandle | None = None
        self.frames_written = 0

    def mark(self, outbox: Outbox, urgent: bool) -> None:
        """Schedule a flush of `outbox`: now-ish if `urgent`, else within `interval`."""
        if urgent or not self.interval:
            self.pending.append(outbox)
            if not self.scheduled:
                self.scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
        else:
            self.timed.append(outbox)
            if self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(self.interval,
                                                                  self.flush_timed)

    def flush(self) -> None:
        """Write out every outbox with an urgent frame."""
        pending, self.pending = self.pending, []
        self.scheduled = False
        for outbox in pending:
            self.frames_written += outbox.flush()

    def flush_timed(self) -> None:
        """Write out every outbox with market data waiting."""
        timed, self.timed = self.timed, []
        self.timer = None
        for outbox in timed:
            self.frames_written += outbox.flush()


class Outbox:
    """One connection's queued outgoing frames."""

    __slots__ = ("_drainer", "blocked", "capacity", "closed", "dropped", "flusher",
                 "frames", "last_sent", "name", "on_overflow", "transport", "urgent")

    def __init__(self, name: str, transport: asyncio.Transport, flusher: Flusher,
                 capacity: int, on_overflow: Callable[[Outbox], None]) -> None:
        self.name = name
        self.transport = transport
        self.flusher = flusher
        self.capacity = capacity
        self.on_overflow = on_overflow
        self.frames: list[bytes] = []
        self.closed = False
        self.blocked = False
        self.urgent = False
        self.dropped = 0
        self.last_sent = time.monotonic()
        self._drainer: asyncio.Task[None] | None = None

    def offer(self, frame: bytes, urgent: bool = False) -> None:
        """Queue a frame without waiting; a full outbox calls `on_overflow` instead.

        `urgent` frames (replies to requests) are flushed without the market-data delay.
        """
        if self.closed:
            return
        frames = self.frames
        if len(frames) >= self.capacity:
            self.closed = True
            self.dropped += len(frames) + 1
            frames.clear()
            self.on_overflow(self)
            return
        frames.append(frame)
        if self.blocked:
            return
        if len(frames) == 1:
            self.urgent = urgent
            self.flusher.mark(self, urgent)
        elif urgent and not self.urgent:
            self.urgent = True
            self.flusher.mark(self, True)

    def flush(self) -> int:
        """Write what is queued unless the socket is backed up; return frames written."""
        frames = self.frames
        if self.closed or self.blocked or not frames:
            return 0
        transport = self.transport
        if transport.is_closing():
            self.closed = True
            frames.clear()
            return 0
        if transport.get_write_buffer_size() > HIGH_WATER:
            self.blocked = True
            self._drainer = asyncio.ensure_future(self._wait_for_room())
            return 0
        transport.writelines(frames)
        count = len(frames)
        self.frames = []
        self.urgent = False
        self.last_sent = time.monotonic()
        return count

    async def _wait_for_room(self) -> None:
        transport = self.transport
        while transport.get_write_buffer_size() > LOW_WATER and not transport.is_closing():
            await asyncio.sleep(0.005)
        self.blocked = False
        if self.frames:
            self.flusher.mark(self, True)

    def close(self) -> None:
        """Stop sending: drop what is queued and stop any wait for room."""
        self.closed = True
        self.frames = []
        if self._drainer is not None:
            self._drainer.cancel()
