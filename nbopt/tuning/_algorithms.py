"""Search algorithms: a registry of names -> Hyperopt ``suggest`` functions.

Every algorithm has Hyperopt's ``suggest(new_ids, domain, trials, seed) -> [trial docs]``
signature, so the search loop drives them all the same way. An algorithm is built per run
from a :class:`SearchContext`, which lets it see the space and the budget.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nbopt.errors import ConfigError, did_you_mean
from nbopt.space import grid_points

Suggest = Callable[[list[int], Any, Any, int], list[dict[str, Any]]]


@dataclass(frozen=True)
class SearchContext:
    """What an algorithm may know about the run it serves."""

    space: Any
    max_evals: int | None


@dataclass(frozen=True)
class Algorithm:
    """A search algorithm, by name or as an object passed to ``tune(algo=...)``.

    ``build(context)`` is called once per search and returns a function with Hyperopt's
    ``suggest(new_ids, domain, trials, seed) -> [trial documents]`` signature, which proposes
    the next configuration from the trials so far (an empty list ends the search). Another
    engine with a search of its own (``optimize_auto``'s plan search) passes such an object;
    only the named ones are offered to users.

    Attributes:
        name: Shown in the live view and the result (``result.algo``).
        summary: One line for ``%tune?``.
        build: Makes the suggest function of one search.
    """

    name: str
    summary: str
    build: Callable[[SearchContext], Suggest]


ALGORITHMS: dict[str, Algorithm] = {}


def register(name: str, summary: str) -> Callable[[Callable[[SearchContext], Suggest]], Any]:
    """Offer an algorithm to users of ``tune()`` and ``%tune`` under ``name``."""

    def decorate(build: Callable[[SearchContext], Suggest]) -> Callable[[SearchContext], Suggest]:
        ALGORITHMS[name] = Algorithm(name, summary, build)
        return build

    return decorate


def get_algorithm(algo: str | Algorithm) -> Algorithm:
    """The algorithm named ``algo``, or ``algo`` itself when it is an :class:`Algorithm`."""
    if isinstance(algo, Algorithm):
        return algo
    try:
        return ALGORITHMS[algo]
    except (KeyError, TypeError):
        hint = did_you_mean(str(algo), ALGORITHMS)
        known = ", ".join(ALGORITHMS)
        raise ConfigError(f"unknown algo {algo!r}{hint}; known algorithms: {known}") from None


def vals_key(vals: dict[str, Any]) -> str:
    """A hashable identity of a configuration in Hyperopt's label -> value encoding."""
    from nbopt.tuning._trial import jsonable

    if all(type(v) is int or (type(v) is float and math.isfinite(v)) for v in vals.values()):
        return json.dumps(vals, sort_keys=True)  # as read from a study: JSON already
    return json.dumps(jsonable(vals), sort_keys=True)


def trial_doc(domain: Any, trials: Any, tid: int, vals: dict[str, Any]) -> dict[str, Any]:
    """A Hyperopt trial document for the configuration ``vals`` (labels absent are inactive)."""
    misc = {
        "tid": tid,
        "cmd": domain.cmd,
        "workdir": domain.workdir,
        "idxs": {label: [tid] if label in vals else [] for label in domain.params},
        "vals": {label: [vals[label]] if label in vals else [] for label in domain.params},
    }
    return trials.new_trial_docs([tid], [None], [domain.new_result()], [misc])[0]


@register(
    "auto", "Gaussian-process Bayesian optimisation (the default); never repeats a configuration"
)
def _gaussian_process(context: SearchContext) -> Suggest:
    from nbopt.tuning.gp import GaussianProcessSearch

    return GaussianProcessSearch(context)


@register("tpe", "Hyperopt's Tree-structured Parzen Estimator (20 random trials first)")
def _tpe(context: SearchContext) -> Suggest:
    from hyperopt import tpe

    return tpe.suggest


@register("rand", "random search")
def _rand(context: SearchContext) -> Suggest:
    from hyperopt import rand

    return rand.suggest


@register("anneal", "Hyperopt's simulated annealing around the best trials")
def _anneal(context: SearchContext) -> Suggest:
    from hyperopt import anneal

    return anneal.suggest


@register("atpe", "Hyperopt's adaptive TPE (needs lightgbm)")
def _atpe(context: SearchContext) -> Suggest:
    from nbopt._imports import optional_import

    optional_import("lightgbm", "atpe", "algo=atpe")
    import numpy as np
    from hyperopt import atpe

    def suggest(new_ids: list[int], domain: Any, trials: Any, seed: int) -> list[dict[str, Any]]:
        # Hyperopt's ATPE ignores its seed and draws from the global random generators;
        # seeding them for the call (and restoring them) makes seed= reproducible.
        python_state, numpy_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            return atpe.suggest(new_ids, domain, trials, seed)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)

    return suggest


@register("grid", "every combination of a discrete space, in order")
def _grid(context: SearchContext) -> Suggest:
    points: Iterator[dict[str, Any]] = grid_points(context.space)
    next(grid_points(context.space), None)  # raises ConfigError now for a continuous space
    seen: set[str] | None = None

    def suggest(new_ids: list[int], domain: Any, trials: Any, seed: int) -> list[dict[str, Any]]:
        nonlocal seen
        if seen is None:  # the first call: what a resumed study already evaluated
            seen = {vals_key(_active_vals(doc)) for doc in trials.trials}
        for point in points:
            key = vals_key(point)
            if key not in seen:
                seen.add(key)
                return [trial_doc(domain, trials, new_ids[0], point)]
        return []

    return suggest


def _active_vals(doc: dict[str, Any]) -> dict[str, Any]:
    return {label: values[0] for label, values in doc["misc"]["vals"].items() if values}
