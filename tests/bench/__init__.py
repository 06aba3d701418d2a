"""Smoke tests of the benchmarks in bench/.

A package, so that test_store.py here and tests/test_store.py can both be collected. pytest then imports
this folder as `bench`, which would hide the repository's bench/: its folder joins this package's path,
so `from bench import overhead` still finds the benchmarks.
"""

from pathlib import Path

__path__.append(str(Path(__file__).resolve().parents[2] / "bench"))
