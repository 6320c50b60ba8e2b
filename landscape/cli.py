r"""The ``landscape`` console script.

Subcommands live in ``landscape/_commands/``, one module each, and are found
automatically: a module defines ``NAME``, ``HELP``, ``ORDER``, ``configure(p)``
and ``run(args) -> int`` (and optionally ``DESCRIPTION`` and ``EPILOG``).
User errors (:class:`landscape.UserError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
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
        mod.configure(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
