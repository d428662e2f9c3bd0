"""`python -m streamconv`: the command line, as the `streamconv` script runs it, from this
checkout whether installed or not (tools/bench.py runs it so, so that a working tree
benchmarks its own code)."""

from .cli import main

main()
