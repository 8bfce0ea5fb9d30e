"""Hyperparameter search: :func:`tune` and its result.

Importing this package is light; Hyperopt is imported when a search starts.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nbopt.errors import ConfigError
from nbopt.events import Event
from nbopt.space import contains_dimension, is_hyperopt_expression
from nbopt.tuning._algorithms import (
    ALGORITHMS,
    Algorithm,
    SearchContext,
    Suggest,
    trial_doc,
    vals_key,
)
from nbopt.tuning._cell import CellObjective
from nbopt.tuning._errors import AllTrialsFailed, StopSearch, StudyWriteError
from nbopt.tuning._result import TuneResult
from nbopt.tuning._stopping import STOP_RULES, AshaStopper, MedianStopper, Stopper
from nbopt.tuning._trial import Trial, TrialState
from nbopt.ui import DEFAULT_LOGDIR

__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "STOP_RULES",
    "Algorithm",
    "AllTrialsFailed",
    "AshaStopper",
    "CellObjective",
    "MedianStopper",
    "SearchContext",
    "StopSearch",
    "Stopper",
    "StudyWriteError",
    "Suggest",
    "Trial",
    "TrialState",
    "TuneResult",
    "check_study",
    "trial_doc",
    "tune",
    "vals_key",
]

# Backends that run a search's trials: name -> "module:function", imported when used. The
# function takes (search, call, parallel=, address=) and returns the TuneResult.
BACKENDS = {
    "local": "nbopt.tuning._search:run_locally",
    "ray": "nbopt.tuning._ray:run_on_ray",
}


def tune(
    objective: Callable[..., Any],
    space: Any,
    *,
    max_evals: int | None = None,
    timeout: float | None = None,
    algo: str | Algorithm = "auto",
    seed: int | None = None,
    metric: str | Sequence[str] | None = None,
    mode: str | Sequence[str] = "min",
    constraint: str | Sequence[str] | None = None,
    study: str | os.PathLike[str] | None = None,
    restart: bool = False,
    deterministic: bool = True,
    stop: str | Stopper = "none",
    stop_warmup: int = 0,
    stop_min_trials: int = 5,
    rung: int = 1,
    backend: str = "local",
    parallel: int = 1,
    address: str | None = None,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> TuneResult:
    """Search the hyperparameters of ``objective`` over ``space``.

    Args:
        objective: Called once per trial. If its parameters name the space's keys it is called
            as ``objective(lr=..., layers=...)``; if it takes a single parameter of another
            name, as ``objective(params)``. It returns a number, or a dict holding ``metric``.
            An exception, NaN or inf fails that trial; the search goes on.
        space: A dict of parameter names to dimensions (``nbopt.loguniform(1e-4, 1e-1)``,
            ``nbopt.choice(1, 2, 3)``, nested dicts, constants) or a Hyperopt space.
        max_evals: Trials to run in all, counting those of a resumed study. Defaults to the
            grid size for ``algo="grid"``, to unlimited when ``timeout`` is given, else 20.
        timeout: Seconds after which no new trial is started.
        algo: ``"auto"`` (the default: Bayesian optimisation with a Gaussian process, never
            a repeat; see :mod:`nbopt.tuning.gp`), ``"tpe"``, ``"rand"``, ``"anneal"``,
            ``"atpe"``, ``"grid"``, or an :class:`Algorithm` object (another engine's own
            search).
        seed: Seed of the search's random choices, for a reproducible sequence of trials.
        metric: Key of the value to optimise in a dict result (default ``"loss"``, or its only
            number); or a list of keys for several objectives (``["val_acc", "latency"]``):
            the objective then returns a dict holding every one (a trial missing one fails),
            and the result has a front of non-dominated trials instead of a best one
            (:attr:`TuneResult.front`, :meth:`TuneResult.pick`). With two metrics
            ``algo="auto"`` models each and proposes by expected hypervolume improvement;
            otherwise the proposers learn from a random augmented Chebyshev scalarisation of
            the metrics (ParEGO), with a new weight vector for each proposal.
        mode: ``"min"`` or ``"max"``; with several metrics, one per metric (``["max",
            "min"]``), or one string for all.
        constraint: ``"latency <= 5"`` (``<=``, ``>=``, ``<``, ``>``, ``==``), several in a
            list or separated by commas: bounds on metrics the objective returns or reports
            (an objective metric or another). A trial that breaks one is feasible for nothing:
            never the best, never on the front. The search learns the constraints: a trial
            that broke one counts, for the algorithm, as worse than every feasible trial, the
            more so the further it was from meeting it. A trial that does not report a
            constrained metric fails; constraints no value could meet together are refused
            before any trial.
        study: File that keeps every trial (a journal of JSON lines); an existing study is
            continued. Any number of processes, on one machine or several sharing the disk,
            can run one study at once: trial numbers stay unique, each sees the others'
            finished and running trials, and ``max_evals`` counts them all.
        restart: Start the study over instead of continuing it.
        deterministic: The objective gives the same value for the same configuration, so a
            configuration already evaluated is not run again.
        stop: Early stopping of bad trials from the values they report with
            :func:`nbopt.report`: ``"median"`` (stop a trial whose best value so far is worse
            than the median of earlier trials at the same step, from step ``stop_warmup`` on
            and once ``stop_min_trials`` trials reported that step) or ``"asha"`` (successive
            halving: at rungs of ``rung``, 3x``rung``, 9x``rung`` ... steps, keep only the best
            third), or a :class:`Stopper` of your own. ``report`` then raises
            :class:`nbopt.TrialStopped` out of the objective; the trial is recorded as
            ``stopped`` with its last value, which the search learns from. With several
            objectives, report each by name (``nbopt.report(step, val_acc=a, params=n)``):
            ``"median"`` stops a trial that an earlier trial dominates at its step, and
            ``"asha"`` keeps at each rung the fronts holding the best third; a stopped trial
            is left off the front.
        stop_warmup: Steps before the median rule may stop a trial.
        stop_min_trials: Trials that must have reported a step before the median rule judges it.
        rung: Steps to ASHA's first rung.
        backend: ``"local"`` (trials in this process, or in ``parallel`` processes forked from
            it) or ``"ray"`` (Ray Tune trials, ``parallel`` at a time, on a local Ray or the
            cluster at ``address``; needs ``pip install "nbopt[ray]"``).
        parallel: Trials running at once. On the local backend, each runs in a worker process
            forked from this one (so functions and data defined in a notebook work as they
            are, and a trial that crashes its process fails alone); this process proposes
            every configuration, records every trial, and shows them as usual.
        address: Ray cluster to join: ``"auto"`` (the one started on this machine with
            ``ray start``) or ``"host:port"`` (the head's GCS port, 6379 by default). By
            default a local Ray of the search's own is started and shut down after it.
        progress: ``"auto"`` (a widget in a notebook, text elsewhere), ``"widget"``,
            ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory (one run per trial, with HParams); None for no logs.
        callbacks: Callables that receive every event of the run
            (:mod:`nbopt.ui.events`).

    Returns:
        A :class:`TuneResult`. Raises :class:`nbopt.TuneError` if every trial failed, and
        re-raises ``KeyboardInterrupt`` after saving what finished.

    Example:
        >>> import nbopt
        >>> result = nbopt.tune(lambda x: (x - 1) ** 2, {"x": nbopt.uniform(-3, 3)},
        ...                     max_evals=10, seed=0, progress="none", logdir=None)
        >>> len(result.trials)
        10
    """
    from nbopt.tuning._objective import bind_objective
    from nbopt.tuning._search import Search
    from nbopt.tuning._stopping import StopSettings
    from nbopt.ui.reporting import reporting_bus, run_name

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    if parallel < 1:
        raise ConfigError(f"parallel must be at least 1, got {parallel}")
    if address is not None and backend != "ray":
        raise ConfigError("address= needs backend='ray'")
    if isinstance(stop, Stopper) and backend != "local":
        raise ConfigError(
            "stop= with a Stopper object runs on the local backend; on Ray use stop='median' "
            "or stop='asha', which map onto Ray's own schedulers"
        )
    keys = _space_keys(space)
    call = bind_objective(objective, keys)
    stop_settings = StopSettings(stop, stop_warmup, stop_min_trials, rung)
    name = run_name("tune", os.fspath(study) if study is not None else None)
    bus = reporting_bus(progress, logdir, callbacks, run=name)
    search = Search(
        space,
        bus=bus,
        algo=algo,
        max_evals=max_evals,
        timeout=timeout,
        seed=seed,
        metric=metric,
        mode=mode,
        constraint=constraint,
        study=study,
        restart=restart,
        deterministic=deterministic,
        stop=stop_settings,
        name=name,
        backend=backend,
    )
    module, function = BACKENDS[backend].split(":")
    run = getattr(importlib.import_module(module), function)
    result = run(search, call, parallel=parallel, address=address)
    result.space = space
    if backend == "local":
        from nbopt.tuning._whatif import trial_runner

        result._runner = trial_runner(search, call)
    return result


def check_study(
    path: str | os.PathLike[str], *, metric: str, mode: str = "min", restart: bool = False
) -> int:
    """Check, before any work, that a search can keep its trials in the study at ``path``:
    the path can be written (its directory is created if its parent exists), and an existing
    file is a valid study made with ``metric`` and ``mode``. For an engine that runs ``tune``
    after work of its own, on a search space it only knows then (the space is checked when
    the search starts). Returns the number of finished trials the study holds.

    Raises:
        ConfigError: what is wrong, in one line; the file is left untouched.
    """
    from nbopt.tuning._study import check_study as check

    return check(path, metric=metric, mode=mode, restart=restart)


def _space_keys(space: Any) -> list[str] | None:
    """The parameter names of a dict space; None for a space of another shape."""
    if is_hyperopt_expression(space):
        return None
    if not isinstance(space, Mapping):
        raise ConfigError(
            f"space must be a dict of parameters (or a Hyperopt space), got {type(space).__name__}"
        )
    if not contains_dimension(space):
        raise ConfigError("the search space has no dimension to search (uniform, choice, ...)")
    return [str(key) for key in space]
