r"""The ``landscape`` console script.

Subcommands live in ``landscape/_commands/``, one module each, and are found
automatically: a module defines ``NAME``, ``HELP``, ``ORDER``, ``configure(p)``
and ``run(args) -> int`` (and optionally ``DESCRIPTION`` and ``EPILOG``).
User errors (:class:`landscape.UserError`) and bad flags print one line and
return code 2 from :func:`main` (no ``SystemExit`` escapes it).

Every subcommand takes ``--config FILE``: a TOML file whose ``[COMMAND]`` table
sets that command's flags (keys as the flags, with ``-`` or ``_``); flags given
on the command line win.  ``landscape train --config`` reads the top-level keys
instead (the experiments' TrainConfig overrides), and it also takes the name of
a shipped experiment.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
from types import ModuleType

from landscape import __version__
from landscape._errors import UserError


def _command_modules() -> list[ModuleType]:
    from landscape import _commands

    mods = [importlib.import_module(f"landscape._commands.{m.name}")
            for m in pkgutil.iter_modules(_commands.__path__) if not m.name.startswith("_")]
    return sorted((m for m in mods if hasattr(m, "NAME")), key=lambda m: (m.ORDER, m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Train with and without Stochastic Weight Averaging (SWA) and "
                    "measure the loss landscape around each solution. Results go to "
                    "one HDF5 run file per run.",
        epilog="Start with `landscape demo` (MNIST-1D, no download), then "
               "`landscape info runs/demo.h5`. Each subcommand has --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=getattr(mod, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # let grids such as -1:1:21 be values, not options (argparse private hook)
        p._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]+:")
        mod.configure(p)
        if not any(a.dest == "config" for a in p._actions):
            p.add_argument("--config", metavar="FILE",
                           help=f"TOML file whose [{mod.NAME}] table sets these flags "
                                "(flags given here win)")
        p.set_defaults(_run=mod.run, _parser=p, _section=getattr(mod, "SECTION", mod.NAME))
    return parser


def _apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  argv: list[str] | None) -> argparse.Namespace:
    """Re-parse with the ``[COMMAND]`` table of ``--config`` as the defaults.

    Returns:
        The arguments.

    Raises:
        UserError: For unknown keys or values a flag does not accept.
    """
    from landscape.config import load_toml

    sub: argparse.ArgumentParser = args._parser
    values = load_toml(args.config, section=args._section)
    actions = {a.dest: a for a in sub._actions if a.option_strings}
    bad = sorted(set(values) - set(actions) - {"help"})
    if bad:
        raise UserError(f"unknown key(s) {bad} in the [{args._section}] table of "
                        f"{args.config}; valid: {sorted(k for k in actions if k != 'help')}")
    for k, v in values.items():
        a = actions[k]
        if a.type is not None and isinstance(v, str):
            try:
                v = a.type(v)
            except (TypeError, ValueError):
                raise UserError(f"{args.config}: [{args._section}] {k} = {v!r} is not a "
                                f"valid {a.option_strings[-1]}") from None
        if a.choices is not None and v not in a.choices:
            raise UserError(f"{args.config}: [{args._section}] {k} = {v!r}; choose from "
                            f"{list(a.choices)}")
        values[k] = v
    sub.set_defaults(**values)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI.

    Returns:
        The exit code: 0 ok, 2 bad flags or user error, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or argparse's one-line error
        return int(e.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        if getattr(args, "config", None) and args._section is not None:
            try:
                args = _apply_config(parser, args, argv)
            except SystemExit as e:
                return int(e.code or 0)
        return int(args._run(args) or 0)
    except UserError as e:
        args._parser.print_usage(sys.stderr)
        print(f"landscape {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
