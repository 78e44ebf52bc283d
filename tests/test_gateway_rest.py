"""REST API against a real server on a free port, with aiohttp's client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from lobgw.book.commands import SubmitOrder
from lobgw.book.types import Side
from lobgw.gateway.app import warn_about_demo_keys
from lobgw.gateway.keys import EXCHANGE
from tests.conftest import ALICE_KEY, BOB_KEY, Gateway, make_config


def order(side: str = "BUY", quantity: str = "1", price: str | None = "100", **extra: Any
          ) -> dict[str, Any]:
    body: dict[str, Any] = {"symbol": "BTC-USD", "side": side, "quantity": quantity, **extra}
    if price is not None:
        body["price"] = price
    return body


async def test_place_rest_and_trade(gateway: Gateway) -> None:
    status, ack, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                        order("SELL", "1.5", "100.5", client_order_id="s-1"))
    assert status == 201
    assert ack["order"]["status"] == "NEW"
    assert ack["order"]["remaining_quantity"] == "1.50"
    assert ack["order"]["client_order_id"] == "s-1"
    status, ack, _ = await gateway.call("POST", "/api/v1/orders", BOB_KEY,
                                        order("BUY", "2", "101"))
    assert status == 201
    assert ack["order"]["status"] == "PARTIALLY_FILLED"
    assert ack["order"]["filled_quantity"] == "1.50"
    assert ack["order"]["average_price"] == "100.5"
    assert ack["fills"] == [{"trade_seq": 3, "price": "100.5", "quantity": "1.50",
                             "liquidity": "TAKER", "timestamp": ack["fills"][0]["timestamp"]}]
    status, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book?depth=5")
    assert status == 200
    assert book == {"symbol": "BTC-USD", "seq": 3, "bids": [["101.0", "0.50"]], "asks": []}
    status, trades, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/trades?limit=10")
    assert trades["trades"][0]["price"] == "100.5"
    assert trades["trades"][0]["aggressor"] == "BUY"


async def test_engine_rejection_is_422_with_the_order(gateway: Gateway) -> None:
    await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("SELL", "1", "100"))
    status, body, _ = await gateway.call("POST", "/api/v1/orders", BOB_KEY,
                                         order("BUY", "1", "100", post_only=True))
    assert status == 422
    assert body["error"]["code"] == "POST_ONLY_WOULD_TAKE"
    assert body["order"]["status"] == "REJECTED"
    status, body, _ = await gateway.call("POST", "/api/v1/orders", BOB_KEY,
                                         order("BUY", "5", "100", time_in_force="FOK"))
    assert (status, body["error"]["code"]) == (422, "FOK_NOT_FILLED")


async def test_market_order_and_ioc(gateway: Gateway) -> None:
    await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("SELL", "1", "100"))
    status, ack, _ = await gateway.call("POST", "/api/v1/orders", BOB_KEY,
                                        order("BUY", "3", None, type="MARKET"))
    assert status == 201
    assert ack["order"]["status"] == "EXPIRED"
    assert ack["order"]["reason"] == "INSUFFICIENT_LIQUIDITY"
    assert ack["order"]["filled_quantity"] == "1.00"


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1"}, "MISSING_PRICE", "price"),
    ({"side": "BUY", "quantity": "1", "price": "1"}, "MISSING_FIELD", "symbol"),
    ({"symbol": "BTC-USD", "side": "UP", "quantity": "1", "price": "1"}, "INVALID_VALUE",
     "side"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "1", "extra": 1},
     "UNKNOWN_FIELD", "extra"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "abc", "price": "1"}, "INVALID_VALUE",
     "quantity"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "100.2"}, "PRICE_OFF_TICK",
     "price"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1.001", "price": "100"},
     "QUANTITY_OFF_LOT", "quantity"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "0", "price": "100"},
     "INVALID_QUANTITY", "quantity"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "-1", "price": "100"},
     "INVALID_QUANTITY", "quantity"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "-5"},
     "INVALID_PRICE", "price"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "NaN", "price": "5"},
     "INVALID_QUANTITY", "quantity"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "1e999"},
     "INVALID_PRICE", "price"),
    ({"symbol": "NOPE", "side": "BUY", "quantity": "1", "price": "1"}, "UNKNOWN_SYMBOL",
     "symbol"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "type": "MARKET", "price": "1"},
     "PRICE_NOT_ALLOWED", "price"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "1", "post_only": True,
      "time_in_force": "IOC"}, "POST_ONLY_NOT_ALLOWED", "post_only"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "1",
      "client_order_id": "has space"}, "INVALID_VALUE", "client_order_id"),
    ({"symbol": "BTC-USD", "side": "BUY", "quantity": "1", "price": "1", "post_only": "yes"},
     "INVALID_TYPE", "post_only"),
    ([1, 2], "INVALID_TYPE", None),
])
async def test_bad_order_input_is_400_with_code_and_field(
    gateway: Gateway, body: Any, code: str, field: str | None
) -> None:
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, body)
    assert status == 400, reply
    assert reply["error"]["code"] == code
    assert reply["error"]["field"] == field
    assert reply["error"]["reason"]
    _, book, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book")
    assert book["bids"] == [] and book["asks"] == []


async def test_instrument_limits_are_engine_rejections(gateway: Gateway) -> None:
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                          order(quantity="2000"))
    assert (status, reply["error"]["code"]) == (422, "QUANTITY_ABOVE_MAXIMUM")
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, {
        "symbol": "ETH-USD", "side": "BUY", "quantity": "1", "price": "20000"})
    assert (status, reply["error"]["code"]) == (422, "PRICE_OUT_OF_BAND")


async def test_malformed_json_and_too_large_bodies(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(server={"max_request_bytes": 1024})
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, data=b"{not json")
    assert (status, reply["error"]["code"]) == (400, "MALFORMED_JSON")
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                          data=b'{"a": "' + b"x" * 5000 + b'"}')
    assert (status, reply["error"]["code"]) == (413, "REQUEST_TOO_LARGE")
    status, reply, _ = await gateway.call("GET", "/nowhere")
    assert (status, reply["error"]["code"]) == (404, "NOT_FOUND")
    status, reply, _ = await gateway.call("PUT", "/api/v1/orders", ALICE_KEY)
    assert (status, reply["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_auth_is_required_and_keys_are_not_echoed(gateway: Gateway) -> None:
    for key in (None, "wrong-key-wrong-key-wrong"):
        status, reply, _ = await gateway.call("POST", "/api/v1/orders", key, order())
        assert (status, reply["error"]["code"]) == (401, "UNAUTHORIZED")
        assert "wrong-key" not in str(reply)
    status, _, _ = await gateway.call("GET", "/api/v1/orders")
    assert status == 401


async def test_ownership_other_account_sees_not_found(gateway: Gateway) -> None:
    _, ack, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("BUY", "1", "99"))
    order_id = ack["order"]["order_id"]
    for method, json in (("DELETE", None), ("PATCH", {"quantity": "0.5"}), ("GET", None)):
        status, reply, _ = await gateway.call(method, f"/api/v1/orders/{order_id}", BOB_KEY,
                                              json)
        assert (status, reply["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    _, opened, _ = await gateway.call("GET", "/api/v1/orders", BOB_KEY)
    assert opened == []
    _, opened, _ = await gateway.call("GET", "/api/v1/orders", ALICE_KEY)
    assert [o["order_id"] for o in opened] == [order_id]


async def test_cancel_amend_lookup_and_cancel_all(gateway: Gateway) -> None:
    _, a, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                 order("BUY", "2", "99", client_order_id="c1"))
    _, b, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("BUY", "1", "98"))
    _, c, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, {
        "symbol": "ETH-USD", "side": "SELL", "quantity": "1", "price": "2000"})
    first = a["order"]["order_id"]
    status, amended, _ = await gateway.call("PATCH", f"/api/v1/orders/{first}", ALICE_KEY,
                                            {"quantity": "1.5", "price": "99.5"})
    assert status == 200
    assert amended["order"]["price"] == "99.5"
    assert amended["order"]["remaining_quantity"] == "1.50"
    status, amended, _ = await gateway.call("PATCH", "/api/v1/orders/by-client-id/c1",
                                            ALICE_KEY, {"quantity": "1"})
    assert (status, amended["order"]["quantity"]) == (200, "1.00")
    status, reply, _ = await gateway.call("PATCH", f"/api/v1/orders/{first}", ALICE_KEY, {})
    assert (status, reply["error"]["code"]) == (400, "MISSING_FIELD")
    status, canceled, _ = await gateway.call("DELETE", "/api/v1/orders/by-client-id/c1",
                                             ALICE_KEY)
    assert (status, canceled["order"]["status"]) == (200, "CANCELED")
    status, looked, _ = await gateway.call("GET", f"/api/v1/orders/{first}", ALICE_KEY)
    assert (status, looked["status"], looked["reason"]) == (200, "CANCELED", "CANCELED")
    status, reply, _ = await gateway.call("DELETE", f"/api/v1/orders/{first}", ALICE_KEY)
    assert (status, reply["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    status, reply, _ = await gateway.call("DELETE", "/api/v1/orders/abc", ALICE_KEY)
    assert (status, reply["error"]["field"]) == (400, "order_id")
    status, result, _ = await gateway.call("DELETE", "/api/v1/orders?symbol=BTC-USD",
                                           ALICE_KEY)
    assert result == {"canceled": 1, "order_ids": [b["order"]["order_id"]]}
    status, result, _ = await gateway.call("DELETE", "/api/v1/orders", ALICE_KEY)
    assert result == {"canceled": 1, "order_ids": [c["order"]["order_id"]]}
    for method in ("DELETE", "GET"):  # listing an unknown symbol is an error too, not []
        status, reply, _ = await gateway.call(method, "/api/v1/orders?symbol=XX", ALICE_KEY)
        assert (status, reply["error"]["code"], reply["error"]["field"]) == (
            400, "UNKNOWN_SYMBOL", "symbol")


async def test_a_client_order_id_is_taken_while_its_order_is_kept(gateway: Gateway) -> None:
    status, _, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                      order(client_order_id="dup"))
    assert status == 201
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                          order(price="90", client_order_id="dup"))
    assert (status, reply["error"]["code"]) == (409, "DUPLICATE_CLIENT_ORDER_ID")
    _, opened, _ = await gateway.call("GET", "/api/v1/orders", ALICE_KEY)
    assert len(opened) == 1
    # another account may use the same id
    status, _, _ = await gateway.call("POST", "/api/v1/orders", BOB_KEY,
                                      order(price="90", client_order_id="dup"))
    assert status == 201
    # once the order is done the id stays taken: an in-doubt retry gets the original back
    await gateway.call("DELETE", "/api/v1/orders/by-client-id/dup", ALICE_KEY)
    status, reply, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY,
                                          order(price="91", client_order_id="dup"))
    assert (status, reply["error"]["code"]) == (409, "DUPLICATE_CLIENT_ORDER_ID")
    assert (reply["order"]["status"], reply["order"]["price"]) == ("CANCELED", "100.0")


async def test_symbols_stats_health_ready_openapi(gateway: Gateway) -> None:
    status, symbols, _ = await gateway.call("GET", "/api/v1/symbols")
    assert status == 200
    assert symbols[0] == {"symbol": "BTC-USD", "tick_size": "0.5", "lot_size": "0.01",
                          "min_quantity": "0.01", "max_quantity": "1000",
                          "price_band_low": None, "price_band_high": None}
    await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("SELL", "1", "100"))
    await gateway.call("POST", "/api/v1/orders", BOB_KEY, order("BUY", "0.25", "100"))
    status, stats, _ = await gateway.call("GET", "/stats/BTC-USD")
    assert status == 200
    assert (stats["orders_accepted"], stats["trades"], stats["volume"]) == (2, 1, "0.25")
    assert stats["best_ask"] == ["100.0", "0.75"]
    status, reply, _ = await gateway.call("GET", "/stats/NOPE")
    assert (status, reply["error"]["code"]) == (404, "NOT_FOUND")
    assert (await gateway.call("GET", "/health"))[0] == 200
    status, readiness, _ = await gateway.call("GET", "/ready")
    assert (status, readiness["status"]) == (200, "ok")
    status, document, _ = await gateway.call("GET", "/openapi.json")
    assert document["openapi"].startswith("3.")
    assert "/api/v1/orders" in document["paths"]
    place = document["paths"]["/api/v1/orders"]["post"]
    assert place["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlaceOrder"}
    assert "PlaceOrder" in document["components"]["schemas"]
    status, reply, _ = await gateway.call("GET", "/api/v1/symbols/BTC-USD/book?depth=0")
    assert (status, reply["error"]["code"], reply["error"]["field"]) == (
        400, "OUT_OF_RANGE", "depth")


async def test_openapi_describes_what_the_server_does(gateway: Gateway) -> None:
    """Tools read the document: the key is a security scheme (not a parameter a fuzzer may
    replace), ids have bounds, every status a route can answer is declared, and /ws (not
    REST) is left out."""
    _, document, _ = await gateway.call("GET", "/openapi.json")
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    one = document["paths"]["/api/v1/orders/{order_id}"]
    for method in ("get", "delete"):
        assert one[method]["security"] == [{"ApiKey": []}]
        assert all(p["name"] != "X-API-Key" for p in one[method]["parameters"])
        assert {"400", "401", "404", "429"} <= set(one[method]["responses"])
        (order_id,) = [p for p in one[method]["parameters"] if p["name"] == "order_id"]
        assert order_id["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert "400" in document["paths"]["/api/v1/orders"]["get"]["responses"]
    assert "security" not in document["paths"]["/health"]["get"]
    assert "/ws" not in document["paths"]
    (symbol,) = document["paths"]["/api/v1/symbols/{symbol}/book"]["get"]["parameters"][:1]
    assert symbol["schema"] == {"type": "string", "enum": ["BTC-USD", "ETH-USD"]}
    place = document["paths"]["/api/v1/orders"]["post"]["responses"]["201"]
    assert place["links"]["get_order"] == {
        "operationId": "get_order", "parameters": {"order_id": "$response.body#/order/order_id"}}


async def test_405_names_allowed_methods_and_no_server_banner(gateway: Gateway) -> None:
    status, reply, headers = await gateway.call("PATCH", "/api/v1/orders", ALICE_KEY)
    assert (status, reply["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")
    assert set(headers["Allow"].split(",")) == {"GET", "POST", "DELETE"}
    assert "Server" not in headers
    _, _, headers = await gateway.call("GET", "/health")
    assert "Server" not in headers


def test_demo_keys_on_a_public_address_are_announced(caplog: pytest.LogCaptureFixture
                                                     ) -> None:
    demo = [{"name": "alice", "api_key": "demo-alice-key-0000000000000001"}]
    with caplog.at_level("WARNING", logger="lobgw"):
        warn_about_demo_keys(make_config(accounts=demo))
        assert caplog.records == []
        warn_about_demo_keys(make_config(accounts=demo, server={"host": "0.0.0.0"}))
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert "DEMO API KEYS" in record.getMessage() and "alice" in record.getMessage()
    assert "demo-alice-key" not in record.getMessage()


METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.e+Inf-]+$')


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith(("# HELP ", "# TYPE ")), line
            continue
        assert METRIC_LINE.match(line), line
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


async def test_metrics_parse_and_move_when_orders_flow(gateway: Gateway) -> None:
    status, text, headers = await gateway.call("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    before = parse_metrics(text)
    await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order("SELL", "1", "100"))
    await gateway.call("POST", "/api/v1/orders", BOB_KEY, order("BUY", "1", "100"))
    await gateway.call("POST", "/api/v1/orders", BOB_KEY, order("BUY", "1", "100",
                                                                 time_in_force="FOK"))
    _, text, _ = await gateway.call("GET", "/metrics")
    after = parse_metrics(text)
    assert after['lobgw_orders_received_total{symbol="BTC-USD"}'] == 3
    assert after['lobgw_orders_accepted_total{symbol="BTC-USD"}'] == 2
    assert after['lobgw_trades_total{symbol="BTC-USD"}'] == 1
    assert after['lobgw_orders_rejected_total{reason="FOK_NOT_FILLED",symbol="BTC-USD"}'] == 1
    assert after['lobgw_command_latency_seconds_count{symbol="BTC-USD"}'] == 3
    assert before.get('lobgw_trades_total{symbol="BTC-USD"}', 0) == 0
    assert any(key.startswith("lobgw_http_request_duration_seconds_count") for key in after)


async def test_rate_limit_answers_429_with_retry_after(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_key_rate": 1, "per_key_burst": 3})
    statuses = [(await gateway.call("GET", "/api/v1/orders", ALICE_KEY)) for _ in range(5)]
    assert [s for s, _, _ in statuses] == [200, 200, 200, 429, 429]
    _, body, headers = statuses[-1]
    assert body["error"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) >= 1
    # another key has its own bucket
    assert (await gateway.call("GET", "/api/v1/orders", BOB_KEY))[0] == 200


async def test_per_ip_rate_limit(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(rate_limits={"per_ip_rate": 1, "per_ip_burst": 2})
    statuses = [(await gateway.call("GET", "/api/v1/symbols"))[0] for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert (await gateway.call("GET", "/health"))[0] == 200  # probes are never limited


async def test_full_queue_is_503_overloaded_with_retry_after(
    gateways: Callable[..., Any]
) -> None:
    gateway = await gateways(runtime={"command_queue_size": 2})
    actor = gateway.app[EXCHANGE].actor("BTC-USD")
    actor.pause()
    await asyncio.sleep(0.01)
    futures = [actor.ask([SubmitOrder(9_000 + i, "x", Side.BUY, 1, price=10)])
               for i in range(2)]
    await asyncio.sleep(0.01)  # the paused actor holds the first, the queue has room for 2
    futures.append(actor.ask([SubmitOrder(9_100, "x", Side.BUY, 1, price=10)]))
    status, reply, headers = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order())
    assert (status, reply["error"]["code"]) == (503, "OVERLOADED")
    assert headers["Retry-After"] == "1"
    actor.resume()
    await asyncio.gather(*futures)
    status, _, _ = await gateway.call("POST", "/api/v1/orders", ALICE_KEY, order())
    assert status == 201


async def test_cors_preflight_and_headers(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(cors={"allow_origins": ["https://app.example"]})
    status, _, headers = await gateway.call(
        "OPTIONS", "/api/v1/orders",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-API-Key" in headers["Access-Control-Allow-Headers"]
    _, _, headers = await gateway.call("GET", "/api/v1/symbols",
                                       headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers
