"""Write docs/reference.md, the command-line reference, from the typer app itself, so that it
cannot drift from the code (tests/test_cli_docs.py fails when the file is out of date).

    python tools/cli_reference.py            # rewrite docs/reference.md
    python tools/cli_reference.py --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer.main
from typer.testing import CliRunner

from streamconv.cli import app

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
WIDTH = 80  # what the help is written for: an 80-column terminal


def help_text(*command: str) -> str:
    """`streamconv COMMAND --help` as an 80-column terminal shows it."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(WIDTH)},
                                prog_name="streamconv")
    assert result.exit_code == 0, result.output
    return result.output.rstrip("\n")


def commands() -> list[str]:
    """The commands, in the order `streamconv --help` lists them."""
    group = typer.main.get_command(app)
    return [name for name, command in getattr(group, "commands", {}).items() if not command.hidden]


def reference() -> str:
    parts = ["# Command-line reference",
             "",
             "Generated from the command line by `python tools/cli_reference.py`; do not edit",
             "(tests/test_cli_docs.py fails when this file is out of date). The same text is",
             "each command's `--help`. [guide.md](guide.md) shows how the commands fit together.",
             "",
             "```",
             help_text(),
             "```"]
    for name in commands():
        parts += ["", f"## streamconv {name}", "", "```", help_text(name), "```"]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/reference.md is out of date")
    args = parser.parse_args()
    text = reference()
    if args.check:
        current = REFERENCE.read_text() if REFERENCE.exists() else ""
        if current != text:
            sys.exit(f"{REFERENCE} is out of date: run python tools/cli_reference.py")
        return
    REFERENCE.write_text(text)


if __name__ == "__main__":
    main()
