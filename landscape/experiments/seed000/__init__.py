r"""Protocol ``seed000``: the IIIT Vadodara report's protocol (tiny BN CNN, Kaggle digits).

An Optuna search (TPE, seeded) for SGD without SWA and SGD with SWA over batch
size, learning rate, momentum, early-stopping patience and maximum epochs (and
the SWA learning-rate ratio), scored on one held-out fold of the training set;
then ``folds``-fold cross-validation of each best config; then a fit on the
whole training set scored on train and test.  *Early stopping*: each fit
evaluates the validation fold after every epoch; the stopping epoch is the
best epoch before ``patience`` epochs without improvement (Keras'
``restore_best_weights`` semantics), monitored on the iterate for SGD and on
the running SWA model (BN statistics recomputed) for SWA.  Because the SGD
schedule is constant and the SWA schedule depends only on ``swa_start``, a run
truncated at epoch ``e`` equals the first ``e`` epochs of a longer run, so
reading the history is exact.  The final fit trains for the median CV
stopping epoch.  With ``--data kaggle-digits`` and a ``test.csv``, Kaggle
submissions are written.

With ``--data mnist`` and ``[experiment] kaggle_train = N`` the MNIST files are
re-split at the competition's scale (:func:`landscape.data.kaggle_split`: the
first N of the 70,000 images in file order are ``train.csv``, the rest are
held out, scored, and predicted into the submissions).

Resumable: each finished search and each finished (seed, method) is kept in
``RUNS_DIR/progress.h5`` with the config it was made with; the same command
rerun after a kill redoes only the rest.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments.seed000.report import (  # noqa: F401
    FIGURES,
    SEED_REPORTED,
    _figures,
    _report,
    verdicts,
)
from landscape.experiments.seed000.run import (  # noqa: F401
    _cross_validate,
    _predict,
    _torch_threads,
    data_note,
    load_seed_data,
    run_seed000,
    serial_threads,
    tune,
)
from landscape.experiments.seed000.settings import Seed000Settings

register_protocol(Protocol(
    name="seed000", title="tiny BN CNN, Optuna + 5-fold CV, SGD with vs without SWA",
    settings=Seed000Settings, run=run_seed000, figures=_figures, report=_report))
