"""Helpers shared by the subcommands: config flags generated from dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from landscape.config import from_dict, load_toml


def add_config_flags(parser: argparse.ArgumentParser, cls: type,
                     skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field, with the field's help and default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=None, help=help_)
        else:
            parser.add_argument(flag, type=base, default=None, help=help_,
                                choices=f.metadata.get("choices"),
                                metavar=f.name.upper() if not f.metadata.get(
                                    "choices") else None)


def config_from_args(args: argparse.Namespace, cls: type,
                     section: str | None = None) -> Any:
    """Defaults, then the ``--config`` TOML file, then flags given on the command line."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values |= load_toml(args.config, cls, section)
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return from_dict(values, cls)
