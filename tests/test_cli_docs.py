"""The command line's documentation: docs/reference.md is generated from the typer app and must
be up to date, and every command's help reads well in an 80-column terminal."""

from __future__ import annotations

import re

import pytest
from cli_reference import REFERENCE, WIDTH, commands, help_text, reference


def test_the_reference_is_up_to_date():
    assert REFERENCE.read_text() == reference(), "run: python tools/cli_reference.py"


@pytest.mark.parametrize("command", commands())
def test_help_fits_80_columns_with_room_for_the_descriptions(command):
    text = help_text(command)
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    # Descriptions start at a column that leaves them most of the line (rich's panels gave the
    # option names half the width and wrapped each description into fragments).
    columns = [m.start(1) for m in map(re.compile(r"  -\S.*?  +(\S)").match, text.splitlines()) if m]
    assert columns and max(columns) <= 40
