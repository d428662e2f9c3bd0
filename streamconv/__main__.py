"""`python -m streamconv`: the command line, as the `streamconv` script runs it."""

from .cli import main

main()
