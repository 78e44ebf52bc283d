"""Outgoing WebSocket frames: encoded once, queued per connection, written in batches.

A market-data message goes to many connections. It is encoded into a complete text frame
once (`encode_frame`) and the same bytes are queued in every subscriber's `Outbox`. Outboxes
with something queued are flushed together by the `Flusher` (replies at the end of the loop
iteration, market data within `runtime.market_data_flush_ms`), each with a single
`writelines` — one system call for everything that accumulated, instead of a task wake-up
and a system call per message per subscriber. While a socket's send buffer is
above `HIGH_WATER` its outbox holds frames and waits for it to drain. A connection that stays
too far behind for too long (`SlowConsumerPolicy`) is a slow consumer and is closed by its
connection; one burst, however big, is not.

aiohttp's own writer sends one frame per call, so frames are built here: a final, unmasked,
uncompressed text frame is a 2-, 4- or 10-byte header and the payload (RFC 6455 §5.2).
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import struct
import termios
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


_UNSENT = array.array("i", [0])


def _unsent_in_kernel(transport: asyncio.Transport) -> int:
    """Bytes in the socket's send queue that the peer has not acknowledged (0 where the
    platform cannot tell)."""
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(termios, "TIOCOUTQ"):
        return 0
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, _UNSENT, True)
    except OSError:
        return 0
    return _UNSENT[0]


class SlowConsumerPolicy:
    """When a connection counts as too far behind to keep.

    Behind means the bytes queued here plus the bytes in the socket's write buffer: what the
    peer has not read yet. A connection is slow once it stays more than `behind_bytes`
    behind for `behind_seconds` (a reader that drains keeps its connection through any single
    burst), or at once when it is more than `max_bytes` behind (memory is finite).
    """

    __slots__ = ("behind_bytes", "behind_seconds", "max_bytes")

    def __init__(self, behind_bytes: int = 4 << 20, behind_seconds: float = 5.0,
                 max_bytes: int = 64 << 20) -> None:
        self.behind_bytes = behind_bytes
        self.behind_seconds = behind_seconds
        self.max_bytes = max_bytes


class Outbox:
    """One connection's queued outgoing frames."""

    __slots__ = ("_drainer", "behind_since", "blocked", "closed", "dropped", "flusher",
                 "frames", "last_sent", "name", "on_overflow", "policy", "queued_bytes",
                 "transport", "urgent")

    def __init__(self, name: str, transport: asyncio.Transport, flusher: Flusher,
                 policy: SlowConsumerPolicy, on_overflow: Callable[[Outbox], None]) -> None:
        self.name = name
        self.transport = transport
        self.flusher = flusher
        self.policy = policy
        self.on_overflow = on_overflow
        self.frames: list[bytes] = []
        self.queued_bytes = 0
        self.behind_since: float | None = None
        self.closed = False
        self.blocked = False
        self.urgent = False
        self.dropped = 0
        self.last_sent = time.monotonic()
        self._drainer: asyncio.Task[None] | None = None

    def offer(self, frame: bytes, urgent: bool = False) -> None:
        """Queue a frame without waiting; a connection past the hard limit is closed.

        `urgent` frames (replies to requests) are flushed without the market-data delay.
        """
        if self.closed:
            return
        frames = self.frames
        frames.append(frame)
        self.queued_bytes += len(frame)
        if self.queued_bytes > self.policy.max_bytes:
            self._overflow()
            return
        if self.blocked:
            return
        if len(frames) == 1:
            self.urgent = urgent
            self.flusher.mark(self, urgent)
        elif urgent and not self.urgent:
            self.urgent = True
            self.flusher.mark(self, True)

    def behind(self) -> int:
        """Bytes the peer has not taken yet: queued here, in the transport's buffer, and
        sent to the kernel but not acknowledged by the peer (Linux `TIOCOUTQ`; loopback
        and fast links hide megabytes there)."""
        return (self.queued_bytes + self.transport.get_write_buffer_size()
                + _unsent_in_kernel(self.transport))

    def check(self, now: float | None = None) -> bool:
        """Apply the slow-consumer policy; return True if the connection was closed."""
        if self.closed:
            return False
        if self.behind() <= self.policy.behind_bytes:
            self.behind_since = None
            return False
        now = time.monotonic() if now is None else now
        if self.behind_since is None:
            self.behind_since = now
        elif now - self.behind_since >= self.policy.behind_seconds:
            self._overflow()
            return True
        return False

    def _overflow(self) -> None:
        self.closed = True
        self.dropped += len(self.frames)
        self.frames.clear()
        self.queued_bytes = 0
        self.on_overflow(self)

    def flush(self) -> int:
        """Write what is queued unless the socket is backed up; return frames written."""
        frames = self.frames
        if self.closed or self.blocked or not frames:
            return 0
        transport = self.transport
        if transport.is_closing():
            self.closed = True
            frames.clear()
            self.queued_bytes = 0
            return 0
        if transport.get_write_buffer_size() > HIGH_WATER:
            self.blocked = True
            self._drainer = asyncio.ensure_future(self._wait_for_room())
            self.check()
            return 0
        transport.writelines(frames)
        count = len(frames)
        self.frames = []
        self.queued_bytes = 0
        self.urgent = False
        self.last_sent = time.monotonic()
        # No slow-consumer check here: a write that went through leaves at most HIGH_WATER
        # in user space, and the periodic sweep (a few times a second) sees the kernel's
        # queue; an ioctl per flush per subscriber cost a third of fan-out throughput.
        return count

    async def _wait_for_room(self) -> None:
        transport = self.transport
        while transport.get_write_buffer_size() > LOW_WATER and not transport.is_closing():
            if self.check():
                return
            await asyncio.sleep(0.005)
        self.blocked = False
        if self.frames:
            self.flusher.mark(self, True)

    def close(self) -> None:
        """Stop sending: drop what is queued and stop any wait for room."""
        self.closed = True
        self.frames = []
        self.queued_bytes = 0
        if self._drainer is not None:
            self._drainer.cancel()
