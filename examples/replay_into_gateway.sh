#!/bin/sh
# Replay a csv order flow into a running gateway over its WebSocket API, then look at the book.
#     make run &        # or: lobgw serve --config config.toml
#     sh examples/replay_into_gateway.sh [ws://127.0.0.1:8080/ws]
set -e
URL=${1:-ws://127.0.0.1:8080/ws}
HERE=$(dirname "$0")
lobgw replay "$HERE/flow.csv" --format csv --symbol BTC-USD --into "$URL" \
    --api-key demo-alice-key-0000000000000001
python3 - "$URL" <<'PY'
import json, sys, urllib.request
base = sys.argv[1].replace("ws://", "http://", 1).rsplit("/ws", 1)[0]
with urllib.request.urlopen(base + "/api/v1/symbols/BTC-USD/book?depth=5") as reply:
    print(json.dumps(json.load(reply), indent=2))
PY
