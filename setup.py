"""The build ships the top-level ``experiments/*.toml`` inside the package.

The protocol configs live at the top of the repository (``experiments/``, beside
``figures/``); an installed wheel must still run ``landscape reproduce NAME`` from any
folder, so ``build_py`` copies them to ``landscape/_experiments/`` in the build, where
:data:`landscape.config.CONFIGS_DIR` finds them.  An editable install reads the
checkout's ``experiments/`` directly.  Everything else is in ``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithExperiments(build_py):
    """``build_py`` plus the experiment configs as package data."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dst = Path(self.build_lib) / "landscape" / "_experiments"
        dst.mkdir(parents=True, exist_ok=True)
        for src in sorted((Path(__file__).parent / "experiments").glob("*.toml")):
            shutil.copy2(src, dst / src.name)


setup(cmdclass={"build_py": BuildPyWithExperiments})
