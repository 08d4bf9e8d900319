"""Benchmarks (measurements, not tests): run as `python -m benchmarks.<name>`."""
