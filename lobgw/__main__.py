"""`python -m lobgw` is the `lobgw` command."""

import sys

from lobgw.cli import main

sys.exit(main())
