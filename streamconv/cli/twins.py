"""The `--no-` twins that on-only flags had until issue 28 (`--no-debug`, `--no-overwrite`,
`--no-no-colon-suffix`...), still accepted from scripts written then, never offered in --help.

A flag such as `--debug` is declared with one name, so that --help lists it alone; click then
refuses `--no-debug`. `main` catches that refusal and runs the command again with each twin
applied as it used to be: it undoes the flag given before it. Nothing is parsed twice on the
ordinary path.
"""

from __future__ import annotations

from typing import Any


def without_twins(args: list[str], command: Any) -> list[str] | None:
    """`args` with every `--no-X` of an on-only flag `--X` of `command` (a click command)
    applied, or None when `args` hold no such twin."""
    twins: dict[str, set[str]] = {}
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None) \
                and param.default is False:
            for name in param.opts:
                if name.startswith("--"):
                    twins["--no-" + name[2:]] = set(param.opts)
    if not any(arg in twins for arg in _options(args)):
        return None
    kept: list[str] = []
    for at, arg in enumerate(args):
        if arg == "--":
            return kept + args[at:]
        if arg in twins:
            kept = [k for k in kept if k not in twins[arg]]  # the flag given before is undone
            continue
        kept.append(arg)
    return kept


def _options(args: list[str]) -> list[str]:
    return args[:args.index("--")] if "--" in args else args
