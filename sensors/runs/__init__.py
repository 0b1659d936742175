"""Runs: phases, records and the store that keeps them."""
