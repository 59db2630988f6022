"""The generator's options as click flags, built from ``options.FIELDS`` (declared once).

Each flag defaults to None, so a caller can tell "not given" from a value and layer
them: flags over a spec's ``load:`` over the defaults. ``--help`` shows each default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from loadgen.options import FIELDS, GeneratorOptions
from tools.python.runpath import user_path


def generator_flags(command: Callable) -> Callable:
    """Add one flag per generator option to a click command (keyword = the field name)."""
    defaults = GeneratorOptions()
    for f in reversed(FIELDS):
        kind = click.Choice(f.choices) if f.choices else str
        command = click.option(f.flag, f.name, type=kind, default=None,
                               help=f"{f.help} [default: {f.text(getattr(defaults, f.name))}]")(command)
    return command


def pop_generator_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the generator flags from a command's keyword arguments; return those given,
    keyed by flag (a ``file:`` payload resolved against where the user typed it)."""
    given = {}
    for f in FIELDS:
        value = kwargs.pop(f.name, None)
        if value is not None:
            given[f.flag] = value
    payload = given.get("--payload", "")
    if payload.startswith("file:"):
        given["--payload"] = "file:" + str(user_path(payload[len("file:"):]))
    return given


def resolve(flags: Mapping[str, Any], load: Mapping[str, Any] | None = None,
            where: str = "load") -> GeneratorOptions:
    """The flags given over ``load`` (a spec's ``load:``, a recorded sweep's) over the
    defaults. Raises OptionsError naming ``where.key`` or the flag."""
    return GeneratorOptions.from_mapping(load or {}, where).updated(flags, by="flag")
