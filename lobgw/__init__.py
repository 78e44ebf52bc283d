"""lobgw: a limit-order-book exchange gateway."""

__version__ = "0.2.0"
