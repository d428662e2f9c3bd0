"""`python -m streamconv`: the command line of this checkout, installed or not (tools/bench.py
runs it so, so that a working tree benchmarks its own code)."""

from .cli import main

main()
