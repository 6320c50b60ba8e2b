r"""Learning-rate schedules shared by SWA training and curve training (pure).

The SWA paper's reference code and Garipov et al.'s curve training use the same
factor: constant for the first half of the budget, linear to ``r`` by 90 %.
"""

from __future__ import annotations


def swa_paper_factor(epoch: float, budget: float, final: float) -> float:
    r"""The SWA paper's learning-rate factor at ``epoch`` of a ``budget``.

    .. math::
        f(t) = 1 \ (t \le 0.5), \quad 1 - (1 - r)\frac{t - 0.5}{0.4} \ (t \le 0.9),
        \quad r \ (t > 0.9), \qquad t = \text{epoch} / \text{budget}.

    Example:
        >>> [round(swa_paper_factor(e, 10, 0.01), 4) for e in (0, 5, 7, 9, 12)]
        [1.0, 1.0, 0.505, 0.01, 0.01]
    """
    t = epoch / budget
    if t <= 0.5:
        return 1.0
    if t <= 0.9:
        return 1.0 - (1.0 - final) * (t - 0.5) / 0.4
    return final
