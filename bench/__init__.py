"""Benchmarks for vanilla-nn: mini-batch training throughput per backend, peers side by side.

``python -m bench`` measures and prints the report; ``pytest bench/ --benchmark-only`` runs the
pytest-benchmark suite.
"""
