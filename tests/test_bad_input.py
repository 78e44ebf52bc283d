"""A battery of hostile and malformed inputs against one real `lobgw serve` subprocess.

Every case asserts: the status (or WebSocket error / close code), the machine-readable code,
the field where there is one; that neither a traceback nor an API key is in the response or
in what the server logged meanwhile, and no ERROR line; and that the books (levels and
sequence numbers) and every account's open orders are exactly as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
import websockets

from tests.conftest import ACCOUNTS_TOML, ALICE_KEY, BOB_KEY

WRONG_KEY = "sk-live-not-a-key-of-this-gateway-0001"
SECRETS = (ALICE_KEY, BOB_KEY, WRONG_KEY)
ANY = object()
"""`field` not checked (the case is about the status and code)."""

CONFIG = f"""
[[symbols]]
symbol = "BTC-USD"
tick_size = "0.5"
lot_size = "0.01"
max_quantity = "1000"

[[symbols]]
symbol = "ETH-USD"
tick_size = "0.01"
lot_size = "0.1"

{ACCOUNTS_TOML}
[server]
host = "127.0.0.1"
port = PORT
max_request_bytes = 65536
max_connections_per_ip = 10000

[rate_limits]
per_key_rate = 100000
per_key_burst = 100000
per_ip_rate = 100000
per_ip_burst = 100000

[logging]
access_log = true

[journal]
directory = "JOURNAL"
"""


class Server:
    """The gateway subprocess, and every line it has logged so far."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log: list[str] = []
        assert process.stderr is not None
        stderr = process.stderr
        self.reader = threading.Thread(target=self._read, args=(stderr,), daemon=True)
        self.reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line.decode(errors="replace"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, method: str, path: str, key: str | None = None,
          body: Any = None) -> tuple[int, Any]:
    """A blocking request (for the module fixture, which runs outside any event loop)."""
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"X-API-Key": key} if key else {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("bad-input")
    port = _free_port()
    config = home / "config.toml"
    config.write_text(CONFIG.replace("PORT", str(port)).replace("JOURNAL", str(home / "j")))
    process = subprocess.Popen([sys.executable, "-m", "lobgw", "serve", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    running = Server(process, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _call(running.url, "GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "".join(running.log)
            time.sleep(0.05)
        resting = [(ALICE_KEY, {"symbol": "BTC-USD", "side": "SELL", "quantity": "1",
                                "price": "200", "client_order_id": "a-1"}),
                   (BOB_KEY, {"symbol": "BTC-USD", "side": "BUY", "quantity": "2",
                              "price": "100", "client_order_id": "b-1"}),
                   (ALICE_KEY, {"symbol": "ETH-USD", "side": "BUY", "quantity": "3",
                                "price": "50"})]
        for key, order in resting:
            status, reply = _call(running.url, "POST", "/api/v1/orders", key, order)
            assert status == 201, reply
        yield running
    finally:
        process.kill()
        process.wait()
        running.reader.join(10)
        assert process.stderr is not None
        process.stderr.close()


async def state(session: aiohttp.ClientSession, url: str) -> Any:
    """The books (with their sequence numbers) and every account's open orders."""
    seen = []
    for path, key in [("/api/v1/symbols/BTC-USD/book?depth=100", None),
                      ("/api/v1/symbols/ETH-USD/book?depth=100", None),
                      ("/api/v1/orders", ALICE_KEY), ("/api/v1/orders", BOB_KEY)]:
        async with session.get(url + path, headers={"X-API-Key": key} if key else {}) as r:
            assert r.status == 200
            seen.append(await r.json())
    return seen


# -- the cases ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad input. `kind` is rest (method, path, body, headers), raw (bytes over TCP) or
    ws (frames after authenticating unless `auth` is False). `expect` is an HTTP status, or
    on the WebSocket "error" (an error reply) or a close code."""

    name: str
    kind: str
    expect: int | str
    code: object
    field: object = ANY
    method: str = "POST"
    path: str = "/api/v1/orders"
    body: bytes | None = None
    key: str | None = ALICE_KEY
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    frames: tuple[str | bytes, ...] = ()
    auth: bool = True


ORDER = {"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "10"}


def with_field(name: str, value: Any, base: dict[str, Any] | None = None) -> bytes:
    """The base order with one field replaced (or removed, for `...`)."""
    body = dict(base or ORDER)
    if value is ...:
        body.pop(name)
    else:
        body[name] = value
    return json.dumps(body, ensure_ascii=False).encode()


DEEP = b"[" * 3000 + b"]" * 3000
DEEP_VALUE = (b'{"symbol":"BTC-USD","side":"BUY","quantity":"1","price":' + b"[" * 3000
              + b"]" * 3000 + b"}")
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000

# (value, code) for price and quantity: every spelling the docs do not allow
DECIMALS: list[tuple[Any, str]] = [
    ("1e-1000030", "INVALID_?"), ("1e3", "INVALID_?"), ("1E3", "INVALID_?"),
    ("-100", "INVALID_?"), ("+100", "INVALID_?"), ("0", "INVALID_?"), ("0.000", "INVALID_?"),
    ("\u0661\u0660\u0661", "INVALID_?"), ("\uff11\uff10\uff11", "INVALID_?"),
    ("1_000", "INVALID_?"), (" 100", "INVALID_?"), ("100 ", "INVALID_?"),
    ("100\n", "INVALID_?"), ("100.", "INVALID_?"), (".5", "INVALID_?"),
    ("NaN", "INVALID_?"), ("Infinity", "INVALID_?"), ("-0", "INVALID_?"),
    ("9" * 31, "INVALID_?"), ("1." + "0" * 31, "INVALID_?"),
    ("1..2", "INVALID_VALUE"), ("0x10", "INVALID_VALUE"), ("1,5", "INVALID_VALUE"),
    ("abc", "INVALID_VALUE"), (".", "INVALID_VALUE"), ("1/2", "INVALID_VALUE"),
    ("", "OUT_OF_RANGE"), ("9" * 65, "OUT_OF_RANGE"),
    (100, "INVALID_TYPE"), (1.5, "INVALID_TYPE"), (True, "INVALID_TYPE"),
    ([], "INVALID_TYPE"), ({}, "INVALID_TYPE"),
]


def label(name: str, value: Any) -> str:
    """A short readable test id: long values by their start and length."""
    text = repr(value)
    return f"{name}={text if len(text) <= 24 else text[:12] + f'...({len(text)} chars)'}"


def decimal_cases() -> list[Case]:
    cases = []
    for name, invalid in (("price", "INVALID_PRICE"), ("quantity", "INVALID_QUANTITY")):
        for value, code in DECIMALS:
            code = code.replace("INVALID_?", invalid)
            cases.append(Case(f"rest {label(name, value)}", "rest", 400, code, name,
                              body=with_field(name, value)))
            place = {"op": "place", "id": 7, "order": json.loads(with_field(name, value))}
            cases.append(Case(f"ws {label(name, value)}", "ws", "error", code, f"order.{name}",
                              frames=(json.dumps(place, ensure_ascii=False),)))
        cases.append(Case(f"amend {name}=1e-1000030", "rest", 400, invalid, name,
                          method="PATCH", path="/api/v1/orders/by-client-id/a-1",
                          body=json.dumps({name: "1e-1000030"}).encode()))
        cases.append(Case(f"amend {name}=\u0661", "rest", 400, invalid, name,
                          method="PATCH", path="/api/v1/orders/by-client-id/a-1",
                          body=json.dumps({name: "\u0661"}, ensure_ascii=False).encode()))
    return cases


FIELD_CASES = [
    ("side", "HOLD", "INVALID_VALUE"), ("side", "buy", "INVALID_VALUE"),
    ("side", 1, "INVALID_TYPE"), ("side", None, "INVALID_TYPE"), ("side", ..., "MISSING_FIELD"),
    ("symbol", "NOPE", "UNKNOWN_SYMBOL"), ("symbol", "btc-usd", "UNKNOWN_SYMBOL"),
    ("symbol", "", "OUT_OF_RANGE"), ("symbol", "X" * 33, "OUT_OF_RANGE"),
    ("symbol", 7, "INVALID_TYPE"), ("symbol", ..., "MISSING_FIELD"),
    ("quantity", ..., "MISSING_FIELD"), ("quantity", None, "INVALID_TYPE"),
    ("type", "ICEBERG", "INVALID_VALUE"), ("type", 1, "INVALID_TYPE"),
    ("stop_price", "10", "STOP_PRICE_NOT_ALLOWED"), ("stop_price", 10, "INVALID_TYPE"),
    ("display_quantity", "2", "DISPLAY_ABOVE_QUANTITY"),
    ("display_quantity", "-1", "INVALID_QUANTITY"), ("expire_time", "soon", "INVALID_TYPE"),
    ("expire_time", 2**64, "OUT_OF_RANGE"),
    ("time_in_force", "FOREVER", "INVALID_VALUE"), ("stp", "WHATEVER", "INVALID_VALUE"),
    ("post_only", "yes", "INVALID_TYPE"), ("post_only", 1, "INVALID_TYPE"),
    ("client_order_id", "abc\n", "INVALID_VALUE"), ("client_order_id", "abc\r", "INVALID_VALUE"),
    ("client_order_id", "a b", "INVALID_VALUE"), ("client_order_id", "caf\u00e9", "INVALID_VALUE"),
    ("client_order_id", "x" * 65, "OUT_OF_RANGE"), ("client_order_id", "", "OUT_OF_RANGE"),
    ("client_order_id", 5, "INVALID_TYPE"), ("client_order_id", "a-1", "DUPLICATE_CLIENT_ORDER_ID"),
    ("price", "10.25", "PRICE_OFF_TICK"), ("quantity", "0.001", "QUANTITY_OFF_LOT"),
    ("price", ..., "MISSING_PRICE"), ("extra", 1, "UNKNOWN_FIELD"),
    ("__proto__", {}, "UNKNOWN_FIELD"),
]
MARKET = {"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "type": "MARKET"}
STATUS = {"UNKNOWN_SYMBOL": 400, "DUPLICATE_CLIENT_ORDER_ID": 409}


def field_cases() -> list[Case]:
    cases = []
    for name, value, code in FIELD_CASES:
        cases.append(Case(f"rest {label(name, value)}", "rest", STATUS.get(code, 400), code,
                          "client_order_id" if code == "DUPLICATE_CLIENT_ORDER_ID" else
                          "price" if code == "MISSING_PRICE" else name,
                          body=with_field(name, value)))
    cases += [
        Case("market with a price", "rest", 400, "PRICE_NOT_ALLOWED", "price",
             body=with_field("price", "10", MARKET)),
        Case("stop with a price", "rest", 400, "PRICE_NOT_ALLOWED", "price",
             body=with_field("stop_price", "10", {**ORDER, "type": "STOP"})),
        Case("market post-only", "rest", 400, "POST_ONLY_NOT_ALLOWED", ANY,
             body=with_field("post_only", True, MARKET)),
        Case("post-only IOC", "rest", 400, "POST_ONLY_NOT_ALLOWED", ANY,
             body=with_field("time_in_force", "IOC", {**ORDER, "post_only": True})),
        Case("ws place client id abc\\n", "ws", "error", "INVALID_VALUE",
             "order.client_order_id", frames=(json.dumps({"op": "place", "order": {
                 **ORDER, "client_order_id": "abc\n"}}),)),
        Case("ws place unknown symbol", "ws", "error", "UNKNOWN_SYMBOL", "order.symbol",
             frames=(json.dumps({"op": "place", "order": {**ORDER, "symbol": "NOPE"}}),)),
        Case("ws place off tick", "ws", "error", "PRICE_OFF_TICK", "order.price",
             frames=(json.dumps({"op": "place", "order": {**ORDER, "price": "10.25"}}),)),
    ]
    return cases


def body_cases() -> list[Case]:
    bodies: list[tuple[str, bytes, str, object]] = [
        ("not JSON", b"{oops", "MALFORMED_JSON", None), ("empty body", b"", "MALFORMED_JSON", None),
        ("a list", b"[]", "INVALID_TYPE", None), ("null", b"null", "INVALID_TYPE", None),
        ("a number", b"1", "INVALID_TYPE", None), ("a string", b'"order"', "INVALID_TYPE", None),
        ("duplicate keys", b'{"symbol":"BTC-USD","side":"BUY","side":"SELL","quantity":"1",'
                           b'"price":"10"}', "MALFORMED_JSON", "side"),
        ("duplicate keys, one escaped", b'{"symbol":"BTC-USD","side":"BUY","sid\\u0065":"SELL",'
                                        b'"quantity":"1","price":"10"}', "MALFORMED_JSON", "side"),
        ("duplicate keys, spaced", b'{"symbol" : "BTC-USD", "side" : "BUY", "quantity" :"1",'
                                   b' "price":"10", "price"\n:"11"}', "MALFORMED_JSON", "price"),
        ("duplicate keys, nested", b'{"symbol":"BTC-USD","side":"BUY","quantity":"1",'
                                   b'"client_order_id":"x\\":","price":"10","price":"1"}',
         "MALFORMED_JSON", "price"),
        ("3000-deep list", DEEP, "INVALID_TYPE", None),
        ("3000-deep value", DEEP_VALUE, "INVALID_TYPE", "price"),
        ("3000-deep object", DEEP_OBJECT, "UNKNOWN_FIELD", "a"),
        ("NaN literal", b'{"symbol":"BTC-USD","side":"BUY","quantity":NaN}', "MALFORMED_JSON",
         None),
        ("invalid UTF-8", b'{"symbol":"BTC-\xff\xfe","side":"BUY","quantity":"1"}',
         "MALFORMED_JSON", None),
        ("trailing garbage", with_field("price", "10") + b"xyz", "MALFORMED_JSON", None),
        ("two documents", with_field("price", "10") * 2, "MALFORMED_JSON", None),
        ("lone surrogate", b'{"symbol":"\\ud800","side":"BUY","quantity":"1","price":"10"}',
         "MALFORMED_JSON", ANY),
    ]
    cases = [Case(f"body {name}", "rest", 400, code, expected, body=data)
             for name, data, code, expected in bodies]
    cases += [
        Case("body too large", "rest", 413, "REQUEST_TOO_LARGE",
             body=b'{"symbol":"' + b"x" * 70000 + b'"}'),
        Case("no key", "rest", 401, "UNAUTHORIZED", key=None, body=with_field("price", "10")),
        Case("wrong key", "rest", 401, "UNAUTHORIZED", key=WRONG_KEY,
             body=with_field("price", "10")),
        Case("key in the query only", "rest", 401, "UNAUTHORIZED", key=None,
             path=f"/api/v1/orders?api_key={ALICE_KEY}", body=with_field("price", "10")),
        Case("key with a space", "rest", 401, "UNAUTHORIZED", key=ALICE_KEY + " x",
             body=with_field("price", "10")),
        Case("empty key", "rest", 401, "UNAUTHORIZED", key="", headers={"X-API-Key": ""},
             body=with_field("price", "10")),
        Case("cancel-after negative", "rest", 400, "OUT_OF_RANGE", "timeout_ms",
             path="/api/v1/cancel-after", body=b'{"timeout_ms": -1}'),
        Case("cancel-after huge", "rest", 400, "OUT_OF_RANGE", "timeout_ms",
             path="/api/v1/cancel-after", body=b'{"timeout_ms": 100000000000}'),
        Case("cancel-after 1.5", "rest", 400, "INVALID_TYPE", "timeout_ms",
             path="/api/v1/cancel-after", body=b'{"timeout_ms": 1.5}'),
        Case("cancel-after 1e3", "rest", 400, "INVALID_TYPE", "timeout_ms",
             path="/api/v1/cancel-after", body=b'{"timeout_ms": 1e3}'),
        Case("cancel-after string", "rest", 400, "INVALID_TYPE", "timeout_ms",
             path="/api/v1/cancel-after", body=b'{"timeout_ms": "1000"}'),
        Case("cancel-after 5000 digits", "rest", 400, ANY, "timeout_ms",
             path="/api/v1/cancel-after", body=b'{"timeout_ms": ' + b"9" * 5000 + b"}"),
        Case("cancel-after missing", "rest", 400, "MISSING_FIELD", "timeout_ms",
             path="/api/v1/cancel-after", body=b"{}"),
        Case("amend nothing", "rest", 400, ANY, method="PATCH",
             path="/api/v1/orders/by-client-id/a-1", body=b"{}"),
        Case("amend unknown field", "rest", 400, "UNKNOWN_FIELD", "side", method="PATCH",
             path="/api/v1/orders/by-client-id/a-1", body=b'{"side": "BUY"}'),
        Case("amend another account's order", "rest", 404, "ORDER_NOT_FOUND", ANY,
             method="PATCH", path="/api/v1/orders/by-client-id/b-1",
             body=b'{"quantity": "0.5"}'),
        Case("amend price off tick", "rest", 400, "PRICE_OFF_TICK", "price", method="PATCH",
             path="/api/v1/orders/by-client-id/a-1", body=b'{"price": "200.25"}'),
    ]
    return cases


BAD_IDS = [
    ("%C2%B2", "superscript two"), ("%D9%A1", "Arabic-Indic one"), ("%EF%BC%91", "fullwidth one"),
    ("1e3", "exponent"), ("-1", "negative"), ("+1", "plus sign"), ("0x1", "hex"),
    ("9" * 5000, "5000 digits"), ("9223372036854775808", "2**63"), ("abc", "letters"),
    ("1%00", "NUL"), ("%201", "space"), ("1.0", "fraction"), ("", "empty"),
]


def path_cases() -> list[Case]:
    cases = []
    for raw_id, what in BAD_IDS:
        for method in ("GET", "DELETE", "PATCH"):
            if raw_id == "":  # /api/v1/orders/ is another route: not found
                cases.append(Case(f"{method} order id {what}", "rest", 404, ANY,
                                  method=method, path="/api/v1/orders/",
                                  body=b'{"quantity":"1"}' if method == "PATCH" else None))
                continue
            cases.append(Case(f"{method} order id {what}", "rest", 400, ANY, "order_id",
                              method=method, path=f"/api/v1/orders/{raw_id}",
                              body=b'{"quantity":"1"}' if method == "PATCH" else None))
    cases += [
        Case("GET order 0", "rest", 400, "INVALID_VALUE", "order_id", method="GET",
             path="/api/v1/orders/0"),
        Case("GET another account's order", "rest", 404, "ORDER_NOT_FOUND", "order_id",
             method="GET", path="/api/v1/orders/2"),
        Case("DELETE another account's order", "rest", 404, "ORDER_NOT_FOUND", "order_id",
             method="DELETE", path="/api/v1/orders/2"),
        Case("client id with newline", "rest", 400, ANY, "client_order_id", method="GET",
             path="/api/v1/orders/by-client-id/abc%0A"),
        Case("client id too long", "rest", 400, ANY, "client_order_id", method="GET",
             path="/api/v1/orders/by-client-id/" + "x" * 65),
        Case("client id with a space", "rest", 400, ANY, "client_order_id", method="DELETE",
             path="/api/v1/orders/by-client-id/a%201"),
        Case("another account's client id", "rest", 404, "ORDER_NOT_FOUND", ANY,
             method="DELETE", path="/api/v1/orders/by-client-id/b-1"),
    ]
    queries = [
        ("/api/v1/symbols/BTC-USD/book?depth=1e3", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=-1", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=0", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=abc", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=%D9%A1", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=%EF%BC%95", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=99999999999999999999999", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=5.0", "depth"),
        ("/api/v1/symbols/BTC-USD/book?depth=%205", "depth"),
        ("/api/v1/symbols/BTC-USD/book?levels=5", "levels"),
        ("/api/v1/symbols/BTC-USD/trades?limit=0", "limit"),
        ("/api/v1/symbols/BTC-USD/trades?limit=1e2", "limit"),
        ("/api/v1/fills?after=garbage", "after"),
        ("/api/v1/fills?limit=-5", "limit"),
        ("/api/v1/fills?symbol=NOPE", "symbol"),
        ("/api/v1/orders?symbol=NOPE", "symbol"),
        ("/api/v1/orders?symbol=", "symbol"),
    ]
    for path, name in queries:
        cases.append(Case(f"GET {path.split('/')[-1]}", "rest", 400, ANY, name, method="GET",
                          path=path))
    cases += [
        Case("DELETE all of an unknown symbol", "rest", 400, "UNKNOWN_SYMBOL", "symbol",
             method="DELETE", path="/api/v1/orders?symbol=NOPE"),
        Case("book of an unknown symbol", "rest", 404, "NOT_FOUND", ANY, method="GET",
             path="/api/v1/symbols/NOPE/book", key=None),
        Case("unknown path", "rest", 404, "NOT_FOUND", None, method="GET", path="/api/v2/x"),
        Case("path with newline", "rest", 404, "NOT_FOUND", None, method="GET",
             path="/api/v1/x%0Ay"),
        Case("PATCH the collection", "rest", 405, "METHOD_NOT_ALLOWED", None, method="PATCH"),
        Case("PUT an order", "rest", 405, "METHOD_NOT_ALLOWED", None, method="PUT",
             path="/api/v1/orders/1"),
        Case("POST health", "rest", 405, "METHOD_NOT_ALLOWED", None, method="POST",
             path="/health", key=None),
    ]
    return cases


REQUEST = b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nX-API-Key: " + ALICE_KEY.encode()


def raw_cases() -> list[Case]:
    raws: list[tuple[str, bytes, int, str]] = [
        ("not HTTP", b"GARBAGE\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("TLS hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400,
         "MALFORMED_HTTP"),
        ("HTTP/9.9", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("bad Content-Length", REQUEST + b"\r\nContent-Length: abc\r\n\r\n", 400,
         "MALFORMED_HTTP"),
        ("negative Content-Length", REQUEST + b"\r\nContent-Length: -5\r\n\r\n", 400,
         "MALFORMED_HTTP"),
        ("huge Content-Length", REQUEST + b"\r\nContent-Length: 99999999999\r\n\r\n", 413,
         "REQUEST_TOO_LARGE"),
        ("Content-Length and chunked", REQUEST + b"\r\nContent-Length: 5\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("bad chunk size", REQUEST + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
         "MALFORMED_HTTP"),
        ("control char in a header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-API-Key: "
         + ALICE_KEY.encode() + b"\x01\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("space in a header name", b"GET /health HTTP/1.1\r\nHost: x\r\nX API Key: 1\r\n\r\n",
         400, "MALFORMED_HTTP"),
        ("NUL in the path", b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n", 400,
         "MALFORMED_HTTP"),
        ("line too long", b"GET /" + b"k" * 9000 + b" HTTP/1.1\r\nX-API-Key: "
         + ALICE_KEY.encode() + b"\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("header too long", b"GET /health HTTP/1.1\r\nX-API-Key: " + ALICE_KEY.encode()
         + b"z" * 9000 + b"\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("key in a long query", b"GET /api/v1/symbols?api_key=" + BOB_KEY.encode() + b"&"
         + b"q" * 9000 + b" HTTP/1.1\r\n\r\n", 400, "MALFORMED_HTTP"),
        ("body not JSON", REQUEST + b"\r\nContent-Type: application/json\r\n"
         b"Content-Length: 5\r\n\r\n{oops", 400, "MALFORMED_JSON"),
        ("chunked deep body", REQUEST + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
         + f"{len(DEEP_OBJECT):x}".encode() + b"\r\n" + DEEP_OBJECT + b"\r\n0\r\n\r\n", 400,
         "UNKNOWN_FIELD"),
    ]
    return [Case(f"raw {name}", "raw", status, code, body=data)
            for name, data, status, code in raws]


def ws_cases() -> list[Case]:
    def op(**message: Any) -> str:
        return json.dumps(message)
    frames: list[tuple[str, str | bytes, object, object]] = [
        ("not JSON", "{oops", "MALFORMED_JSON", None),
        ("empty text", "", "MALFORMED_JSON", None),
        ("a list", "[]", "INVALID_TYPE", ANY), ("null", "null", "INVALID_TYPE", ANY),
        ("binary frame", b'{"op":"ping"}', "UNSUPPORTED_MESSAGE", None),
        ("unknown op", op(op="nope"), "INVALID_VALUE", ANY),
        ("no op", op(id=1), ANY, ANY),
        ("place without order", op(op="place"), "MISSING_FIELD", "order"),
        ("cancel id string", op(op="cancel", order_id="abc"), "INVALID_TYPE", "order_id"),
        ("cancel id negative", op(op="cancel", order_id=-1), "OUT_OF_RANGE", "order_id"),
        ("cancel id 2**64", op(op="cancel", order_id=2**64), ANY, "order_id"),
        ("cancel id 1.5", op(op="cancel", order_id=1.5), "INVALID_TYPE", "order_id"),
        ("cancel id 5000 digits", '{"op":"cancel","order_id":' + "9" * 5000 + "}", ANY, ANY),
        ("cancel another's order", op(op="cancel", order_id=2), "ORDER_NOT_FOUND", ANY),
        ("amend another's order", op(op="amend", client_order_id="b-1", quantity="1"),
         "ORDER_NOT_FOUND", ANY),
        ("amend 1e-1000030", op(op="amend", client_order_id="a-1", quantity="1e-1000030"),
         "INVALID_QUANTITY", "quantity"),
        ("subscribe unknown channel", op(op="subscribe", channel="gossip", symbol="BTC-USD"),
         "INVALID_VALUE", "channel"),
        ("subscribe unknown symbol", op(op="subscribe", channel="book", symbol="NOPE"),
         "UNKNOWN_SYMBOL", "symbol"),
        ("subscribe depth 0", op(op="subscribe", channel="book", symbol="BTC-USD", depth=0),
         "OUT_OF_RANGE", "depth"),
        ("subscribe depth string", op(op="subscribe", channel="book", symbol="BTC-USD",
                                      depth="5"), "INVALID_TYPE", "depth"),
        ("subscribe book without symbol", op(op="subscribe", channel="book"),
         "MISSING_FIELD", "symbol"),
        ("since not a map", op(op="subscribe", channel="executions", since=5),
         "INVALID_TYPE", "since"),
        ("since negative", op(op="subscribe", channel="executions", since={"BTC-USD": -1}),
         ANY, ANY),
        ("unsubscribe nothing", op(op="unsubscribe", channel="trades", symbol="BTC-USD"),
         "INVALID_VALUE", "channel"),
        ("cancel_after negative", op(op="cancel_after", timeout_ms=-1), "OUT_OF_RANGE",
         "timeout_ms"),
        ("second auth", op(op="auth", api_key=BOB_KEY), "ALREADY_AUTHENTICATED", "api_key"),
        ("duplicate keys", '{"op":"cancel","order_id":1,"order_id":2}', "MALFORMED_JSON",
         "order_id"),
        ("3000-deep", DEEP.decode(), "INVALID_TYPE", None),
        ("3000-deep object", DEEP_OBJECT.decode(), "MALFORMED_JSON", None),
        ("3000-deep order", '{"op":"place","order":' + "[" * 3000 + "]" * 3000 + "}",
         "INVALID_TYPE", "order"),
        ("id an object", '{"op":"ping","id":{"a":1}}', "INVALID_TYPE", "id"),
    ]
    cases = [Case(f"ws {name}", "ws", "error", code, expected, frames=(frame,))
             for name, frame, code, expected in frames]
    cases += [
        Case("ws place before auth", "ws", "error", "UNAUTHORIZED", None, auth=False,
             frames=(op(op="place", order=ORDER),)),
        Case("ws wrong key", "ws", "error", "UNAUTHORIZED", "api_key", auth=False,
             frames=(op(op="auth", api_key=WRONG_KEY),)),
        Case("ws 3000-deep before auth", "ws", "error", "MALFORMED_JSON", None, auth=False,
             frames=(DEEP_OBJECT.decode(),)),
        Case("ws cancel_all before auth", "ws", "error", "UNAUTHORIZED", None, auth=False,
             frames=(op(op="cancel_all"),)),
        Case("ws message too big", "ws", 1009, None, frames=("x" * 70000,)),
    ]
    return cases


CASES = decimal_cases() + field_cases() + body_cases() + path_cases() + raw_cases() + ws_cases()


def test_the_battery_is_big_enough() -> None:
    kinds = {kind: sum(case.kind == kind for case in CASES) for kind in ("rest", "raw", "ws")}
    assert len(CASES) >= 150 and min(kinds.values()) >= 10, kinds
    assert len({case.name for case in CASES}) == len(CASES)  # names are the test ids


# -- running one case -------------------------------------------------------------------------

@dataclass
class Outcome:
    expect: int | str
    code: str | None
    field: object
    text: str


async def run_rest(case: Case, server: Server, session: aiohttp.ClientSession) -> Outcome:
    headers = {"Content-Type": "application/json"} if case.body is not None else {}
    if case.key is not None:
        headers["X-API-Key"] = case.key
    headers.update(case.headers)
    async with session.request(case.method, server.url + case.path, data=case.body,
                               headers=headers) as response:
        text = await response.text(errors="replace")
        assert response.content_type == "application/json", (response.status, text)
        error = msgspec.json.decode(text)["error"]
        return Outcome(response.status, error["code"], error["field"], text)


async def run_raw(case: Case, server: Server) -> Outcome:
    assert case.body is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(case.body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 10)
        while b"\r\n\r\n" in data and len(data.split(b"\r\n\r\n", 1)[1]) < int(
                data.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0]):
            data += await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    text = data.decode(errors="replace")
    status_line, _, rest = text.partition("\r\n")
    head, _, body = rest.partition("\r\n\r\n")
    assert "aiohttp" not in head and "Python" not in head, head  # no version banner
    assert "application/json" in head, text
    error = msgspec.json.decode(body)["error"]
    return Outcome(int(status_line.split()[1]), error["code"], error["field"], text)


async def run_ws(case: Case, server: Server) -> Outcome:
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with websockets.connect(url, max_size=None) as ws:
        if case.auth:
            await ws.send(json.dumps({"op": "auth", "id": "a", "api_key": ALICE_KEY}))
            assert msgspec.json.decode(await ws.recv())["type"] == "ack"
        for frame in case.frames:
            await ws.send(frame)
        try:
            reply = await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            return Outcome(closed.rcvd.code, None, ANY, closed.rcvd.reason)
        text = reply if isinstance(reply, str) else reply.decode()
        message = msgspec.json.decode(text)
        assert message["type"] == "error", message
        # the connection is still usable after a refusal
        await ws.send(json.dumps({"op": "ping", "id": "p"}))
        pong = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 10))
        assert (pong["type"], pong["id"]) == ("pong", "p"), pong
        return Outcome("error", message["error"]["code"], message["error"]["field"], text)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_bad_input(case: Case, server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        before = await state(session, server.url)
        mark = len(server.log)
        if case.kind == "rest":
            outcome = await run_rest(case, server, session)
        elif case.kind == "raw":
            outcome = await run_raw(case, server)
        else:
            outcome = await run_ws(case, server)
        after = await state(session, server.url)
    assert outcome.expect == case.expect, outcome.text
    if case.code is not ANY:
        assert outcome.code == case.code, outcome.text
    if case.field is not ANY:
        assert outcome.field == case.field, outcome.text
    assert "Traceback" not in outcome.text and "File \"" not in outcome.text
    for secret in SECRETS:
        assert secret not in outcome.text, "a key is echoed in the response"
    await asyncio.sleep(0.02)  # let the reader thread catch up with the server's log
    logged = "".join(server.log[mark:])
    assert "GET /api/v1/orders 200" in logged  # the log is really being read
    assert "Traceback" not in logged, logged
    assert " ERROR " not in logged and " CRITICAL " not in logged, logged
    for secret in SECRETS:
        assert secret not in logged, logged
    assert after == before, "a refused input changed the books or the open orders"
    assert server.process.poll() is None
