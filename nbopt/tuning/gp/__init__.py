"""Bayesian optimisation with a Gaussian process on Hyperopt's spaces: the default search,
``algo="auto"``.

It searches any space nbopt or Hyperopt can write: ``uniform``, ``loguniform``,
``quniform``/``qloguniform`` (integral when their bounds are), ``randint``, ``choice`` (also
nested choices of dicts whose parameters exist only in their branch), ``normal``, and raw
``hp.*`` nodes (``pchoice``, ``qnormal``, ``lognormal``, ``qlognormal``). It reads the space
from Hyperopt's expression graph and answers through Hyperopt's ``suggest`` interface, so the
search loop, resumable studies and the Ray backend drive it as they drive ``tpe``. For one
``seed`` it proposes the same configurations every time.

What it does, trial after trial:

1. **A quasi-random start.** The first ``max(5, P + 2)`` trials, P being the number of
   parameters, and never more than a quarter of ``max_evals`` (at least 3), are the points of
   a scrambled Sobol sequence over the prior: they cover the space more evenly than random
   draws. (Hyperopt's TPE spends 20 random trials; Optuna's 10.)
2. **A model of the losses.** From then on a Gaussian process is fitted to every finished
   trial. Each parameter is mapped to [0, 1] through its prior (the logarithm for
   ``loguniform``, the normal CDF for ``normal``); the options of a ``choice`` are categories
   (one-hot) unless they are numbers in order, like batch sizes, which are ordinal; a parameter
   of a branch not chosen sits at a neutral position. The kernel is a Matérn 5/2 with one length
   scale per parameter. Its hyperparameters are the most probable ones under a prior whose
   typical length scale grows with the square root of the number of parameters (smooth
   models in many dimensions, after Hvarfner et al., ICML 2024). Losses above the median are
   compressed logarithmically, so that one diverged run does not flatten the good region, and
   a failed trial counts as the worst loss seen.
3. **The most promising next trial.** It proposes the configuration of highest expected
   improvement over the best loss, among 128 Sobol points over the prior and 128
   perturbations of the five best trials (at scales from 0.1% to 30% of each range, a choice
   switched with probability 0.2); the three best climb the gradient of log EI (10 steps), and
   three rounds of ever smaller perturbations of the three best candidates refine them.
   Every candidate is first rounded to what the space can produce (``q`` steps, integers,
   only the chosen branch's parameters). A finite space of at most 1024 configurations is
   scored whole instead.
4. **No repeats.** A configuration already tried, or proposed and still running, is not
   proposed again: on a finite space each configuration is tried once, and the search ends
   when all are. Trials still running (``backend="ray"``, ``parallel=N``) are taken as done at
   the model's prediction, so that parallel proposals spread out rather than pile up.

Its cost per trial stays small in long searches: the hyperparameters are fitted on at most 64
trials (the best quarter and a random rest), from 50 trials on only after the trials grew by 5%,
and the model conditions on at most 300 trials (measured: 6 ms per trial on average over 200
trials of Hartmann6, 10 ms with 31 parameters). ``benchmarks/bench_search.py`` compares it with
Hyperopt and Optuna on 25 seeds: after 50 evaluations its median regret is 6e-05 on Branin
(Optuna's default TPE: 0.12, Hyperopt's TPE: 0.62) and 0.003 on Hartmann6 (0.32 and 0.93); on a
small digits MLP (20 seeds) its median best validation error after 30 trials is 0.0241 (both
TPEs: 0.0259).

**Several objectives.** With two metrics it fits one Gaussian process per objective (each
loss on a linear scale, standardised, with outliers clipped at three interquartile ranges
past the third quartile; not warped as above, because the hypervolume EHVI improves is
measured in the GPs' units) and proposes the configuration of highest expected hypervolume
improvement (EHVI) over the front of the finished trials, in those units, with a reference
point a tenth of each objective's range beyond its worst value. With independent
predictions EHVI has a closed form: the region the front leaves is cut into boxes, and each
box adds a product of differences of expected improvements, so it is exact, without sampling.
Candidates are those above, perturbing the front's members instead of the best trials,
without the gradient ascent. Trials still running join the front at their predicted losses.
With three or more metrics it fits one process to the random augmented Chebyshev
scalarisation (ParEGO) that the search writes as each trial's loss, anew before each
proposal. Both were measured against that scalarisation, with the same seeds. On ZDT1 and
ZDT2 with 2 and 6 parameters (11 seeds, reference point (1.1, 11)), EHVI's front had the
larger hypervolume for every seed in all eight settings of problem, parameters and budget;
after 100 evaluations its median was 11.761 against 11.746 (ZDT1, 2 parameters), 11.756
against 11.742 (ZDT1, 6), 11.427 against 11.395 (ZDT2, 2) and 11.422 against 11.327 (ZDT2,
6); the best possible values are 11.767 and 11.433. A proposal took about twice as long (15
against 7 ms after 100 trials). On DTLZ2 with three objectives (7 seeds, 4 and 6 parameters,
50 and 100 evaluations) EHVI won only 11 of the 28 pairs, at several times the cost, so
three or more objectives keep the scalarisation.
"""

from __future__ import annotations

from nbopt.tuning.gp._search import GaussianProcessSearch

__all__ = ["GaussianProcessSearch"]
