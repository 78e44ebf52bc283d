"""lobgw: a limit-order-book exchange gateway."""

__version__ = "0.1.0"
