"""Simulation: synthetic order flow, market-data replay and backtests."""
