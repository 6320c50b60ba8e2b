r"""Sharpness, curvature and width of a solution, one module per method.

The maths are pure functions of a loss callable ``f(θ)`` (or a Hessian-vector
product ``hvp(v)``) and a flat weight vector; :mod:`landscape.sharpness.runner`
ties them to a run file and stores results under ``/measures/<solution>/``.

=====================  ==========================================================
module                 measure
=====================  ==========================================================
``hessian``            HVPs (double backward / forward-over-reverse), top-k and
                       smallest eigenvalues (Lanczos, ARPACK), power iteration
``hutchinson``         trace (Hutchinson, Hutch++), Frobenius norm
``slq``                eigenvalue density (stochastic Lanczos quadrature)
``keskar2017``         ε-sharpness in a box (L-BFGS-B)
``foret2021sam``       worst-case L2 sharpness (one-step and projected ascent)
``kwon2021asam``       adaptive sharpness, :math:`T = |\theta| + \eta`
``average``            average-case sharpness under Gaussian noise
``jiang2020pacbayes``  PAC-Bayes flatness σ and magnitude-aware σ'
``width``              random-direction width, median and bootstrap interval
=====================  ==========================================================
"""

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
from landscape.sharpness.runner import (
    MEASURES,
    SharpnessConfig,
    compare_solutions,
    format_comparison,
    measure_solution,
)
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

__all__ = [
    "MEASURES",
    "AverageSharpness",
    "BallSharpness",
    "Eigenpairs",
    "EpsilonSharpness",
    "HVPMethod",
    "HessianLinearOperator",
    "SharpnessConfig",
    "SigmaSearch",
    "SpectralDensity",
    "TraceEstimate",
    "WidthResult",
    "adaptive_sharpness",
    "asam_scale",
    "average_sharpness",
    "ball_ascent",
    "compare_solutions",
    "dense_hessian",
    "epsilon_sharpness",
    "format_comparison",
    "hessian_smallest_eigenvalue",
    "hessian_top_eigenvalues",
    "hutchinson_trace",
    "hutchpp_trace",
    "hvp_double_backward",
    "hvp_forward_over_reverse",
    "lanczos_tridiagonal",
    "make_hvp",
    "measure_solution",
    "median_ci",
    "pacbayes_sigma",
    "power_iteration",
    "random_widths",
    "sam_one_step",
    "sam_sharpness",
    "slq_density",
    "tridiagonal_nodes_weights",
    "width_along",
    "width_directions",
    "width_ratio",
]
