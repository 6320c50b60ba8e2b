"""Protocol ``paper``: its settings dataclass and constants."""

from __future__ import annotations

import dataclasses

from landscape.experiments._settings import Settings, measure_default
from landscape.sharpness import specs

#: The flatness measures computed for both solutions of every seed (``measures``), in
#: run order: every measure with a headline that reports tabulate, and the eigenvalue
#: density the figures draw (the registry's; today hessian, trace, density, eps, sam,
#: asam, avg, pacbayes, width).
MEASURES = tuple(name for name, sp in specs().items()
                 if name == "density" or any(h.report for h in sp.headline))


@dataclasses.dataclass(frozen=True)
class PaperSettings(Settings):
    """``[experiment]`` of the ``paper`` protocol (measure defaults: the registry's).

    Attributes:
        budgets: SWA budgets in units of ``epochs``; the first is 1.0 (the SGD budget).
        grid: Points per axis of the figures' 2D surfaces.
        rays: Random unit rays of the width figure.
        ray_points: Radii per ray.
        plane_point: The third point of the plane (``epoch:E``).
        measure_samples: Train samples of every measure.
        directions: Directions of the width measure.
        tau: The width's loss rise.
        trace_samples: Trace HVPs.
        trace_method: Trace estimator: ``hutchinson``, the committed reports'
            (the API's default is Hutch++).
        slq_steps: Lanczos steps of the density.
        gap_points: Points of the SGD→SWA line of the gap.
        measure_seeds: How many seeds are measured (default all).
        workers: Worker processes (default one per core).
        measures: The measures of both solutions.
    """

    budgets: tuple[float, ...] = (1.0, 1.25, 1.5)
    grid: int = 21
    rays: int = 10
    ray_points: int = 25
    plane_point: str = "epoch:15"
    measure_samples: int = measure_default("samples")
    directions: int = measure_default("directions")
    tau: float = measure_default("tau")
    trace_samples: int = measure_default("trace_samples")
    trace_method: str = "hutchinson"
    slq_steps: int = measure_default("slq_steps")
    gap_points: int = 41
    measure_seeds: int | None = None
    workers: int | None = None
    measures: tuple[str, ...] = MEASURES
