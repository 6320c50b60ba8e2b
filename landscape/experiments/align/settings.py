"""Protocol ``align``: its settings dataclass and constants."""

from __future__ import annotations

import dataclasses

from landscape._errors import UserError
from landscape.experiments._settings import Settings, measure_default

#: The line profiles whose barriers are compared, with their table labels.
PATHS = {"line": "raw line", "aligned": "after weight matching",
         "repair": "after weight matching + REPAIR"}


#: Barrier metrics stored per path (the report leads with the first two).
BARRIERS = ("test_err", "train_loss", "train_err", "test_loss")


#: The solutions set side by side on the measures, with their labels.
SOLUTIONS = {"sgd": "SGD (seed 2i)", "swa": "SWA (seed 2i)",
             "merged": "aligned average of the pair's SGD"}


#: The flatness measures of the merged, SGD and SWA solutions (``measures``).
MEASURES = ("hessian", "trace", "width", "pacbayes")


def alignment_name(solution: str) -> str:
    """The alignment's name in a pair's file: the aligned solution and the method.

    Returns:
        The name.
    """
    return f"{solution}_weights_repair"


def width_method(solution: str, path: str, multiple: int) -> str:
    """The results file's method of one path's barriers at one width.

    Returns:
        ``"<solution>_<path>_x<multiple>"``.

    Example:
        >>> width_method("sgd", "aligned", 8)
        'sgd_aligned_x8'
    """
    return f"{solution}_{path}_x{multiple}"


@dataclasses.dataclass(frozen=True)
class AlignSettings(Settings):
    """``[experiment]`` of the ``align`` protocol (measure defaults: the registry's).

    Attributes:
        base_width: Hidden units of the MLP at multiple 1.
        multiples: Width multiples of the sweep (the first is the base; the report
            compares the last with the first).
        solutions: Solutions whose two seeds are aligned and profiled (``sgd``,
            ``swa``).
        points: Values of t of each line profile.
        align_samples: Train inputs of REPAIR's statistics (default: ``align_runs``').
        cnn: Also align and merge the data set's default CNN (BN; seed 000's on
            MNIST) at its own width.
        measures: Flatness measures of the merged, SGD and SWA solutions.
        measure_samples: Train samples of every measure.
        trace_method: Trace estimator: ``hutchinson``, the one the reports' "trace
            (Hutchinson)" label names, as in ``paper`` and ``controls`` (the API's
            default is Hutch++).
        workers: Worker processes (default one per core, at most one per pair).
    """

    base_width: int = 32
    multiples: tuple[int, ...] = (1, 2, 4, 8)
    solutions: tuple[str, ...] = ("sgd", "swa")
    points: int = 21
    align_samples: int | None = None
    cnn: bool = False
    measures: tuple[str, ...] = MEASURES
    measure_samples: int = measure_default("samples")
    trace_method: str = "hutchinson"
    workers: int | None = None

    def check(self) -> AlignSettings:
        """Raise for settings that cannot run.

        Returns:
            ``self``.

        Raises:
            UserError: In one line, with the fix.
        """
        if self.base_width < 1 or not self.multiples or min(self.multiples) < 1:
            raise UserError(f"[experiment] base_width and multiples must be >= 1, got "
                            f"{self.base_width} and {list(self.multiples)}")
        if len(set(self.multiples)) != len(self.multiples):
            raise UserError(f"[experiment] multiples repeat a value: {list(self.multiples)}")
        bad = sorted(set(self.solutions) - {"sgd", "swa"})
        if bad or not self.solutions:
            raise UserError(f"[experiment] solutions must be among ['sgd', 'swa'], got "
                            f"{list(self.solutions)}")
        if self.points < 3:
            raise UserError(f"[experiment] points must be >= 3, got {self.points}")
        if not isinstance(self.cnn, bool):
            raise UserError(f"[experiment] cnn = {self.cnn!r}: expected true or false")
        return self
