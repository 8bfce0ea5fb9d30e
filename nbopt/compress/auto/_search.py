"""The search over compression plans: its space, and the algorithm that runs on nbopt's tuning
engine (``nbopt.tune``: the same study file, live view and TensorBoard logs as ``%tune``).

The algorithm is registered in the tuning engine's registry of algorithms, as ``algo="auto"``
is. For each new trial it

1. stops the search once a plan within the tolerance reaches ``stop_at``, once the user's
   fine-tune function failed (that is a bug to show, not a plan to learn from), or once the
   trials of a resumed study already fill the budget;
2. proposes the next *cheap plan*, in the order Intel Neural Compressor tries its recipes:
   int8 alone, keeping in float the layers the sensitivity pass found to break the tolerance
   on their own, then one more of the most sensitive layers each time it is still outside;
   each other quantization mode alone; then light pruning (0.3, then 0.5 if 0.3 stayed
   within), each also with the quantization that gained most on its own, on the same pruned
   model (which the plan builder reuses); then low-rank 0.95, likewise;
3. past the cheap plans, asks Hyperopt's TPE, which learns from every trial so far.

Each step reads only the finished trials, so a resumed study continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nbopt.errors import ConfigError
from nbopt.space import choice, quniform
from nbopt.tuning import Algorithm, SearchContext, Suggest, trial_doc, vals_key

# A plan outside the tolerance scores INFEASIBLE + its shortfall: worse than any plan within
# it (whose score is its target ratio), and graded, so that TPE learns that a plan just outside
# is nearer to a good one than a plan that destroyed the model. A failed trial would teach it
# nothing.
INFEASIBLE = 10.0
PRUNE_RANGE = (0.1, 0.8, 0.05)
LOWRANK_RANGE = (0.8, 0.99, 0.01)
LADDER_PRUNE = (0.3, 0.5)
LADDER_LOWRANK = 0.95
# Times TPE is asked for a plan not tried yet, before random draws are.
_ATTEMPTS = 5


def score(ratio: float, within: bool, shortfall: float) -> float:
    """What the search minimises: the target ratio within the tolerance, else a penalty."""
    return ratio if within else INFEASIBLE + shortfall


class PlanSpace(dict):
    """The plan dimensions, as a dict of nbopt space functions (all the engine reads), with
    what the algorithm needs besides: how to encode the cheap plans, and when to stop.

    Args:
        prune_keeps: For structured pruning, the options of layers to leave unpruned (the
            first is ``()``); None when pruning is not possible.
        prune_modes: The pruning methods to search (the first is the cheap plans').
        lowrank: Whether some Linear layer is large enough to factorise.
        quant_modes: Quantization modes to search.
        int8_keeps: For int8, the options of layers to leave in float (most sensitive first).
        int8_start: Index of the int8 option the cheap plans start from.
        stop_at: Stop once a plan within the tolerance has a ratio at most this.
        halted: Returns True when the search must stop now.
    """

    def __init__(
        self,
        *,
        prune_keeps: Sequence[tuple[str, ...]] | None,
        prune_modes: Sequence[str] = ("structured",),
        lowrank: bool,
        quant_modes: Sequence[str],
        int8_keeps: Sequence[tuple[str, ...]] = ((),),
        int8_start: int = 0,
        stop_at: float | None = None,
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        dimensions: dict[str, Any] = {}
        if prune_keeps is not None:
            prune = {"amount": quniform(*PRUNE_RANGE), "keep": _options(prune_keeps)}
            if len(prune_modes) > 1:
                prune["mode"] = choice(*prune_modes)
            dimensions["prune"] = choice(None, prune)
        if lowrank:
            dimensions["lowrank"] = choice(None, {"energy": quniform(*LOWRANK_RANGE)})
        if quant_modes:
            dimensions["quant"] = choice(
                None,
                *(
                    {"mode": mode, "keep": _options(int8_keeps)}
                    if mode == "int8"
                    else {"mode": mode}
                    for mode in quant_modes
                ),
            )
        if not dimensions:
            raise ConfigError(
                "nothing to search: the model has no layer to quantize, and pruning and "
                "low-rank need example= and layers to shrink"
            )
        super().__init__(dimensions)
        self.prune_keeps = list(prune_keeps or [])
        self.prune_modes = list(prune_modes)
        self.quant_modes = list(quant_modes)
        self.int8_keeps = list(int8_keeps)
        self.int8_start = min(int8_start, len(self.int8_keeps) - 1)
        self.stop_at = stop_at
        self.halted = halted

    def encode(
        self,
        prune: tuple[float, int] | None = None,
        lowrank: float | None = None,
        quant: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """A plan in Hyperopt's encoding (``{"prune": 1, "prune[1].amount": 0.3, ...}``).

        ``prune`` is ``(amount, keep option)``, ``quant`` is ``(mode, keep option)``.
        """
        vals: dict[str, Any] = {}
        if "prune" in self:
            vals["prune"] = 0 if prune is None else 1
            if prune is not None:
                vals["prune[1].amount"] = _on_grid(prune[0], PRUNE_RANGE[2])
                if len(self.prune_keeps) > 1:
                    vals["prune[1].keep"] = prune[1]
                if len(self.prune_modes) > 1:
                    vals["prune[1].mode"] = 0
        if "lowrank" in self:
            vals["lowrank"] = 0 if lowrank is None else 1
            if lowrank is not None:
                vals["lowrank[1].energy"] = _on_grid(lowrank, LOWRANK_RANGE[2])
        if "quant" in self:
            index = 0 if quant is None else 1 + self.quant_modes.index(quant[0])
            vals["quant"] = index
            if quant is not None and quant[0] == "int8" and len(self.int8_keeps) > 1:
                vals[f"quant[{index}].keep"] = quant[1]
        return vals

    def cheap_plans(self, outcome: dict[str, float]) -> Iterator[dict[str, Any]]:
        """The cheap plans in order; after yielding a plan, reads its score in ``outcome``
        (the caller goes on past a plan only once it has been evaluated)."""
        quant_scores: dict[tuple[str, int], float] = {}
        if "int8" in self.quant_modes:
            for keep in range(self.int8_start, len(self.int8_keeps)):
                plan = self.encode(quant=("int8", keep))
                yield plan
                quant_scores[("int8", keep)] = outcome[vals_key(plan)]
                if outcome[vals_key(plan)] < INFEASIBLE:
                    break
        for mode in self.quant_modes:
            if mode != "int8":
                plan = self.encode(quant=(mode, 0))
                yield plan
                quant_scores[(mode, 0)] = outcome[vals_key(plan)]
        # Combined only with a quantization that gained something on its own.
        gains = {plan: value for plan, value in quant_scores.items() if value < 1.0}
        quant = min(gains, key=gains.__getitem__) if gains else None
        if "prune" in self:
            for amount in LADDER_PRUNE:
                plan = self.encode(prune=(amount, 0))
                yield plan
                within = outcome[vals_key(plan)] < INFEASIBLE
                if quant is not None:
                    yield self.encode(prune=(amount, 0), quant=quant)
                if not within:
                    break
        if "lowrank" in self:
            plan = self.encode(lowrank=LADDER_LOWRANK)
            yield plan
            if quant is not None and outcome[vals_key(plan)] < INFEASIBLE:
                yield self.encode(lowrank=LADDER_LOWRANK, quant=quant)


def _vals(doc: dict[str, Any]) -> dict[str, Any]:
    """A Hyperopt trial document's configuration: its active labels and their values."""
    return {label: values[0] for label, values in doc["misc"]["vals"].items() if values}


def _on_grid(value: float, q: float) -> float:
    """``value`` as Hyperopt's quantized dimensions compute it (``round(x / q) * q``, so 0.3 is
    0.30000000000000004): the engine then knows a cheap plan when TPE proposes it again."""
    return round(value / q) * q


def _options(keeps: Sequence[tuple[str, ...]]) -> Any:
    return choice(*keeps) if len(keeps) > 1 else keeps[0]


def _plan_search(context: SearchContext) -> Suggest:
    space = context.space
    if not isinstance(space, PlanSpace):
        raise ConfigError(
            "the compression-plan search runs on a PlanSpace; it is run by "
            "nbopt.compress.optimize_auto (%%optimize auto)"
        )
    from hyperopt import rand, tpe

    def suggest(new_ids: list[int], domain: Any, trials: Any, seed: int) -> list[dict[str, Any]]:
        outcome = {}
        for doc in trials.trials:
            loss = doc["result"].get("loss")
            outcome[vals_key(_vals(doc))] = float("inf") if loss is None else float(loss)
        best = min(outcome.values(), default=float("inf"))
        if space.halted() or (space.stop_at is not None and best <= space.stop_at):
            return []
        # A resumed study may already hold the whole budget (the engine would go on).
        if context.max_evals is not None and len(trials.trials) >= context.max_evals:
            return []
        for plan in space.cheap_plans(outcome):
            if vals_key(plan) not in outcome:
                return [trial_doc(domain, trials, new_ids[0], plan)]
        # The original model is known without a trial: compressing nothing is no proposal.
        known = {*outcome, vals_key(space.encode())}

        def fresh(docs: list[dict[str, Any]]) -> bool:
            return not docs or vals_key(_vals(docs[0])) not in known

        if best < float("inf"):
            for attempt in range(_ATTEMPTS):
                # The cheap plans are TPE's start: it models them rather than drawing 20 at
                # random. In a small space its best candidate is often a plan already tried.
                docs = tpe.suggest(new_ids, domain, trials, seed + attempt, n_startup_jobs=0)
                if fresh(docs):
                    return docs
        for attempt in range(4 * _ATTEMPTS):
            docs = rand.suggest(new_ids, domain, trials, seed + attempt)
            if fresh(docs):
                return docs
        return docs

    return suggest


PLAN_SEARCH = Algorithm(
    "compress-plans",
    "optimize_auto's search: cheap compression plans first, then TPE",
    _plan_search,
)
