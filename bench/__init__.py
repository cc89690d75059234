"""Benchmarks: each module `bench/<name>.py` measures one part and returns figure records."""
