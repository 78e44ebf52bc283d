"""Talk to a running gateway over its WebSocket API with lobgw's Python client.

    make run &                      # or: lobgw serve --config config.toml
    python examples/client.py [ws://127.0.0.1:8080/ws]

Places a resting sell as alice and a crossing buy as bob, follows the L2 book (checked
against the server's checksum on every update) and bob's execution reports.
"""

from __future__ import annotations

import asyncio
import sys

from lobgw.client import LobgwClient

ALICE = "demo-alice-key-0000000000000001"
BOB = "demo-bob-key-00000000000000000002"


async def main(url: str) -> None:
    """Trade once between two accounts and print what each side saw."""
    async with await LobgwClient.connect(url, api_key=ALICE) as alice, \
            await LobgwClient.connect(url, api_key=BOB) as bob:
        await bob.subscribe("book", "BTC-USD", depth=10)
        await bob.subscribe("executions")
        sell = await alice.place("BTC-USD", "SELL", "0.5", price="64000.25",
                                 client_order_id="example-sell")
        print(f"alice: {sell.order.status.value} sell {sell.order.quantity} "
              f"@ {sell.order.price} (order {sell.order.order_id})")
        buy = await bob.place("BTC-USD", "BUY", "0.2", price="64001")
        for fill in buy.fills:
            print(f"bob:   bought {fill.quantity} @ {fill.price} as {fill.liquidity.value}")
        report = await bob.next_message("execution")
        print(f"bob:   execution report '{report.event.value}', order status "
              f"{report.order.status.value}")
        await bob.next_message("book_update")
        book = bob.books["BTC-USD"]
        print(f"book:  best ask {book.top('asks', 1)} (checksum verified "
              f"{book.updates} update(s), {len(bob.book_errors)} errors)")
        await alice.cancel(client_order_id="example-sell")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/ws"))
