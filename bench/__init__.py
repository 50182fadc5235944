"""Benchmarks: `make bench` prints one table (see bench/table.py for adding a row)."""
