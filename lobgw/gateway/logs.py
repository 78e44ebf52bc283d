"""Logging setup: text for people, JSON lines for log pipelines.

Logs can be neither forged nor flooded, and hold no secrets:
- every control character in a text line is escaped (a `%0A` in a path cannot start a new,
  forged line; ESC sequences cannot drive a terminal); JSON lines escape them anyway;
- configured API keys, and whatever follows `X-API-Key` or `api_key=`, are redacted from
  every record, including aiohttp's own;
- aiohttp's "Error handling request" for a request it could not parse (a client's fault)
  becomes one INFO line without a traceback or the request's bytes, at most
  `CLIENT_ERRORS_PER_WINDOW` per `CLIENT_ERROR_WINDOW` seconds, then a count.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp.http_exceptions import HttpProcessingError

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_encode = msgspec.json.Encoder().encode
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_KEY_NEAR = re.compile(r"(?i)(x-api-key\s*[:=]\s*|api_key=)[^\s&'\",;]+")

_PLAIN = logging.Formatter()
CLIENT_ERRORS_PER_WINDOW = 10
CLIENT_ERROR_WINDOW = 10.0


def escape_control(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\x1b, ...)."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry).decode()


class TextFormatter(logging.Formatter):
    """The text format, with the message's control characters escaped (a traceback that
    lobgw itself attaches keeps its lines)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record on one line (plus its traceback, if any)."""
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = escape_control(record.getMessage()), None
        return super().format(safe)


class RedactSecrets(logging.Filter):
    """Replace API keys in every record's message (and drop them from aiohttp's)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({secret for secret in secrets if secret}, key=len,
                              reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without secrets; always keep the record."""
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(_PLAIN.formatException(record.exc_info))
        return True

    def redact(self, text: str) -> str:
        """`text` without the keys."""
        text = _KEY_NEAR.sub(r"\1[redacted]", text)
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


class ClientErrorsAsInfo(logging.Filter):
    """aiohttp logs a request it could not parse as an ERROR with a traceback that quotes
    the request: make it one short INFO line, and rate-limit those lines."""

    def __init__(self) -> None:
        super().__init__()
        self.window_start = 0.0
        self.in_window = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote, shorten or drop one aiohttp record."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self.window_start >= CLIENT_ERROR_WINDOW:
            if self.suppressed:
                logging.getLogger("lobgw.access").info(
                    "%d more unparseable requests in the last %.0f s", self.suppressed,
                    CLIENT_ERROR_WINDOW)
            self.window_start, self.in_window, self.suppressed = now, 0, 0
        self.in_window += 1
        if self.in_window > CLIENT_ERRORS_PER_WINDOW:
            self.suppressed += 1
            return False
        peer = record.getMessage().rpartition(" ")[2]
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "unparseable request from %s: %s (%d)", (
            peer, type(error).__name__, error.code)
        record.exc_info = record.exc_text = None
        return True


def configure_logging(format: str = "text", level: str = "INFO",
                      secrets: Iterable[str] = ()) -> None:
    """Send lobgw's logs to stderr in the chosen format, never with `secrets` in them."""
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [f for f in server.filters if not isinstance(f, ClientErrorsAsInfo)]
    server.addFilter(ClientErrorsAsInfo())
