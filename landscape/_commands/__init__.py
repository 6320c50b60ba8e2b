"""CLI subcommands, one module each (discovered by :mod:`landscape.cli`)."""
