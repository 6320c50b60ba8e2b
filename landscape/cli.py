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


def _config_value(path: str, section: str, key: str, v: object,
                  a: argparse.Action) -> object:
    """A TOML value as the value flag ``a`` would parse, or a one-line error."""
    where = f"{path}: [{section}] {key} = {v!r}"
    if a.nargs == 0:  # --flag / --no-flag: only true or false
        if not isinstance(v, bool):
            raise UserError(f"{where} must be true or false (a TOML boolean, unquoted)")
        return v  # the key is the flag's dest: its value, whatever the flag's spelling
    if isinstance(v, list) and a.nargs is None:  # a comma-separated flag as a TOML list
        if not all(isinstance(x, (str, int, float)) and not isinstance(x, bool)
                   for x in v):
            raise UserError(f"{where}: a list must hold strings or numbers")
        v = ",".join(str(x) for x in v)
    kind = a.type or str
    if isinstance(v, str):
        if kind is not str:
            try:
                v = kind(v)
            except (TypeError, ValueError):
                raise UserError(f"{where} is not a valid {a.option_strings[-1]}") from None
    elif isinstance(v, bool) or (kind is int and not isinstance(v, int)) or (
            kind is float and not isinstance(v, (int, float))):
        want = {int: "an integer", float: "a number"}.get(kind, "a string")
        raise UserError(f"{where} must be {want}, as {a.option_strings[-1]} takes")
    elif kind not in (int, float):
        v = kind(str(v))
    if a.choices is not None and v not in a.choices:
        raise UserError(f"{where}; choose from {list(a.choices)}")
    return v


def _subparser(parser: argparse.ArgumentParser, argv: list[str]
               ) -> argparse.ArgumentParser | None:
    """The parser of the subcommand ``argv`` names, if any."""
    choices = next(a.choices for a in parser._actions
                   if isinstance(a, argparse._SubParsersAction))
    command = next((x for x in argv if not x.startswith("-")), None)
    return choices.get(command) if command else None


def _apply_config(sub: argparse.ArgumentParser, argv: list[str]) -> None:
    """Set the ``[COMMAND]`` table of ``--config`` as the subcommand's defaults.

    Runs before argparse parses, so a key such as ``out`` also satisfies a
    required flag; flags given on the command line still win.

    Raises:
        UserError: For unknown keys or values a flag does not accept.
    """
    from landscape.config import load_toml

    section = sub.get_default("_section")
    # --config as argparse reads it (--config F, --config=F, an abbreviation)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=sub.allow_abbrev)
    pre.add_argument("--config")
    path = pre.parse_known_args(argv)[0].config
    if path is None or section is None:
        return
    values = load_toml(path, section=section)
    actions = {a.dest: a for a in sub._actions if a.option_strings}
    bad = sorted(set(values) - set(actions) - {"help"})
    if bad:
        raise UserError(f"unknown key(s) {bad} in the [{section}] table of {path}; "
                        f"valid: {sorted(k for k in actions if k != 'help')}")
    for k, v in values.items():
        values[k] = _config_value(path, section, k, v, actions[k])
        actions[k].required = False
    sub.set_defaults(**values)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI.

    Returns:
        The exit code: 0 ok, 2 bad flags or user error, 130 interrupted.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    sub = _subparser(parser, argv)
    if sub is not None:
        try:
            _apply_config(sub, argv)
        except UserError as e:
            sub.print_usage(sys.stderr)
            print(f"{sub.prog}: error: {e}", file=sys.stderr)
            return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or argparse's one-line error
        return int(e.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
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
