r"""Sharpness, curvature and width of a solution, one module per method.

Each module holds the maths as pure functions of an objective ``f(θ)`` (or a
Hessian-vector product ``hvp(v)``) and a flat weight vector, and declares its
measure once in the registry (:mod:`landscape.sharpness._registry`): name,
parameters with defaults, the function, what it stores and its headline
numbers.  Modules are discovered automatically, so a new measure is one new
file.  :func:`measure` runs registered measures on a model and its data;
:mod:`landscape.jobs.measures` runs them on a run file's solutions.

The machinery is private and split along its seams; its public names are
re-exported here: ``_config`` (``param`` and :class:`MeasureConfig`),
``_context`` (:class:`MeasureContext`, what ``compute`` gets), ``_registry``
(:class:`MeasureSpec`, ``register``, :func:`specs`, :func:`headlines`,
parameter look-ups) and ``_runner`` (:class:`MeasureResult`, :func:`measure`,
:func:`run_measure`).

=====================  ==========================================================
module                 measure
=====================  ==========================================================
``hessian``            HVPs (double backward / forward-over-reverse), top-k and
                       smallest eigenvalues (Lanczos, ARPACK), power iteration
``hutchinson``         trace (Hutchinson, Hutch++), Frobenius norm
``slq``                eigenvalue density (stochastic Lanczos quadrature)
``layerwise``          top eigenvalue and trace of each parameter block's Hessian
``keskar2017``         ε-sharpness in a box (L-BFGS-B)
``foret2021sam``       worst-case L2 sharpness (one-step and projected ascent)
``kwon2021asam``       adaptive sharpness, :math:`T = |\theta| + \eta`
``average``            average-case sharpness under Gaussian noise
``jiang2020pacbayes``  PAC-Bayes flatness σ and magnitude-aware σ'
``width``              random-direction width, median and bootstrap interval
=====================  ==========================================================
"""

from landscape.sharpness._base import Objective
from landscape.sharpness._config import MeasureConfig
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import (
    Headline,
    MeasureSpec,
    _discover,
    all_params,
    headlines,
    params_json,
    params_of,
    parse_measures,
    spec,
    specs,
)
from landscape.sharpness._runner import MeasureResult, measure, run_measure
from landscape.sharpness.average import AverageSharpness, average_sharpness
from landscape.sharpness.foret2021sam import (
    BallSharpness,
    ball_ascent,
    sam_one_step,
    sam_sharpness,
)
from landscape.sharpness.hessian import (
    Eigenpairs,
    HessianLinearOperator,
    HVPMethod,
    dense_hessian,
    hessian_smallest_eigenvalue,
    hessian_top_eigenvalues,
    hvp_double_backward,
    hvp_forward_over_reverse,
    make_hvp,
    power_iteration,
)
from landscape.sharpness.hutchinson import TraceEstimate, hutchinson_trace, hutchpp_trace
from landscape.sharpness.jiang2020pacbayes import SigmaSearch, pacbayes_sigma
from landscape.sharpness.keskar2017 import EpsilonSharpness, epsilon_sharpness
from landscape.sharpness.kwon2021asam import adaptive_sharpness, asam_scale
from landscape.sharpness.slq import (
    SpectralDensity,
    lanczos_tridiagonal,
    slq_density,
    tridiagonal_nodes_weights,
)
from landscape.sharpness.width import (
    WidthResult,
    median_ci,
    random_widths,
    width_along,
    width_directions,
    width_ratio,
)

_discover()  # every other module of this package registers its measure on import

__all__ = [
    "AverageSharpness",
    "BallSharpness",
    "Eigenpairs",
    "EpsilonSharpness",
    "HVPMethod",
    "Headline",
    "HessianLinearOperator",
    "MeasureConfig",
    "MeasureContext",
    "MeasureResult",
    "MeasureSpec",
    "Objective",
    "SigmaSearch",
    "SpectralDensity",
    "TraceEstimate",
    "WidthResult",
    "adaptive_sharpness",
    "all_params",
    "asam_scale",
    "average_sharpness",
    "ball_ascent",
    "dense_hessian",
    "epsilon_sharpness",
    "headlines",
    "hessian_smallest_eigenvalue",
    "hessian_top_eigenvalues",
    "hutchinson_trace",
    "hutchpp_trace",
    "hvp_double_backward",
    "hvp_forward_over_reverse",
    "lanczos_tridiagonal",
    "make_hvp",
    "measure",
    "median_ci",
    "pacbayes_sigma",
    "params_json",
    "params_of",
    "parse_measures",
    "power_iteration",
    "random_widths",
    "run_measure",
    "sam_one_step",
    "sam_sharpness",
    "slq_density",
    "spec",
    "specs",
    "tridiagonal_nodes_weights",
    "width_along",
    "width_directions",
    "width_ratio",
]
