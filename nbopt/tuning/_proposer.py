"""Proposing configurations with Hyperopt's machinery, for any backend that runs the trials.

A :class:`Proposer` owns a Hyperopt ``Domain`` and ``Trials`` for one space. ``ask`` returns a
configuration the algorithm suggests (never one already evaluated or being evaluated, for a
deterministic objective); ``tell`` gives the algorithm a finished trial to learn from. The
local loop and the Ray backend share it, so both propose the same way and record the same
Hyperopt encoding (``vals``) in the study, which is what makes a study resumable on either.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import numpy as np
from hyperopt import base, pyll, rand

from nbopt.space import fingerprint, grid_points, grid_size, to_hyperopt
from nbopt.tuning._algorithms import Algorithm, SearchContext, trial_doc
from nbopt.tuning._configuration import Codec
from nbopt.tuning._constraints import Constraints, penalised
from nbopt.tuning._objectives import Objectives, random_weights, scalarised
from nbopt.tuning._trial import Trial

# Proposals asked of the algorithm for an unseen configuration before falling back to random
# sampling, and in all, before the space is taken to be exhausted.
_ALGORITHM_ATTEMPTS = 5
_TOTAL_ATTEMPTS = 60


@dataclass
class Proposal:
    """A configuration to evaluate: Hyperopt's document for it, its encoding and its values."""

    doc: dict[str, Any]
    vals: dict[str, Any]
    params: Any


class Proposer:
    """Suggests configurations of ``space`` with ``algorithm``."""

    def __init__(
        self,
        space: Any,
        *,
        algorithm: Algorithm,
        max_evals: int | None,
        seed: int | None,
        deterministic: bool,
        mode: str,
        objectives: Objectives | None = None,
        constraints: Constraints | None = None,
    ) -> None:
        self.algo = algorithm.name
        self._space = space
        self.size = grid_size(space)
        self.deterministic = deterministic
        self._seed = seed
        self._sign = 1.0 if mode == "min" else -1.0
        self._objectives = objectives
        self._constraints = constraints
        hp_space = to_hyperopt(space)
        self.fingerprint = fingerprint(hp_space)
        self._domain = base.Domain(_not_called, hp_space)
        self._param_nodes = [
            (node, node.arg["label"].obj)
            for node in pyll.dfs(self._domain.expr)
            if node.name == "hyperopt_param"
        ]
        self._codec = Codec(space, self._domain)
        self._suggest = algorithm.build(SearchContext(space, max_evals))
        self._trials = base.Trials()
        self._seen: set[frozenset[tuple[str, Any]]] = set()
        self._restored = 0
        self._held = 0
        self._rng: np.random.Generator | None = None

    def params(self, vals: dict[str, Any]) -> Any:
        """The configuration encoded by ``vals`` (choice indices become the chosen values)."""
        memo = {
            node: vals.get(label, pyll.base.GarbageCollected) for node, label in self._param_nodes
        }
        return pyll.rec_eval(self._domain.expr, memo=memo, print_node_on_error=False)

    def decode(self, vals: dict[str, Any]) -> Any:
        """The configuration of a saved trial's ``vals``, checked against the space first.

        Raises:
            ValueError: a value out of its dimension's range, an unknown or missing label.
        """
        self._codec.check(vals)
        if self._codec.direct:
            return self._codec.decode(vals)
        try:
            return self.params(vals)
        except Exception as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from None

    def restore(self, trials: list[Trial]) -> None:
        """Replay finished trials of the study (an earlier session's, another process's)."""
        docs = []
        for trial in trials:
            tid = self._trials.new_trial_ids(1)[0]
            self._seen.add(identity(trial.vals))
            docs.append(self._filled(trial_doc(self._domain, self._trials, tid, trial.vals), trial))
        if docs:
            self._trials.insert_trial_docs(docs)
            self._trials.refresh()
            self._restored += len(docs)

    def hold(self, vals: dict[str, Any]) -> None:
        """A configuration another process is evaluating: not to be proposed meanwhile."""
        self._seen.add(identity(vals))
        self._held += 1

    def release(self, vals: dict[str, Any]) -> None:
        """A held configuration whose trial was interrupted: it may be proposed again."""
        self._seen.discard(identity(vals))

    def exhausted(self) -> bool:
        return self.deterministic and self.size is not None and len(self._seen) >= self.size

    def ask(self) -> Proposal | None:
        """The next configuration to evaluate, or None when the space is exhausted."""
        if self.exhausted():
            return None
        if self._rng is None:
            # A resumed search draws new seeds: replaying the first session's would propose
            # its configurations again; so does a search joining others on a study.
            entropy: Any = self._seed
            if self._seed is not None and self._held:
                entropy = [self._seed, self._restored, self._held]
            elif self._seed is not None and self._restored:
                entropy = [self._seed, self._restored]
            self._rng = np.random.default_rng(entropy)
        if self._constraints is not None:
            self._penalise()
        if self._objectives is not None:
            self._scalarise(self._rng)
        for attempt in range(_TOTAL_ATTEMPTS):
            tid = self._trials.new_trial_ids(1)
            self._trials.refresh()
            seed = int(self._rng.integers(2**31 - 1))
            suggest = self._suggest if attempt < _ALGORITHM_ATTEMPTS else rand.suggest
            docs = suggest(tid, self._domain, self._trials, seed)
            if not docs:
                return None
            vals = base.spec_from_misc(docs[0]["misc"])
            if self._accept(vals):
                return Proposal(docs[0], vals, self.params(vals))
        return self._first_unseen_point(tid)

    def given(self, vals: dict[str, Any]) -> Proposal:
        """A configuration the caller chose, as the next proposal: the algorithm learns from
        it when told, and does not propose it again."""
        tid = self._trials.new_trial_ids(1)[0]
        self._seen.add(identity(vals))
        return Proposal(trial_doc(self._domain, self._trials, tid, vals), vals, self.params(vals))

    def _accept(self, vals: dict[str, Any]) -> bool:
        key = identity(vals)
        if self.deterministic and key in self._seen:
            return False
        self._seen.add(key)
        return True

    def _first_unseen_point(self, tid: list[int]) -> Proposal | None:
        """Past the random retries, a finite space is walked in order for what is left."""
        if self.size is None:
            return None
        for vals in grid_points(self._space):
            if self._accept(vals):
                doc = trial_doc(self._domain, self._trials, tid[0], vals)
                return Proposal(doc, vals, self.params(vals))
        return None

    def tell(self, proposal: Proposal, trial: Trial) -> None:
        """Learn from a trial; one that did not finish (interrupted) may be proposed again."""
        if trial.finished:
            self._trials.insert_trial_docs([self._filled(proposal.doc, trial)])
            self._trials.refresh()
        else:
            self._seen.discard(identity(proposal.vals))

    def _scalarise(self, rng: np.random.Generator) -> None:
        """Several objectives: give every finished trial, as its loss, ParEGO's augmented
        Chebyshev scalarisation of its normalised objectives under a weight vector drawn anew
        for this proposal, so that successive proposals aim at different parts of the front."""
        assert self._objectives is not None
        weights = random_weights(len(self._objectives.names), rng)
        docs = [doc for doc in self._trials.trials if "losses" in doc["result"]]
        if not docs:
            return
        losses = np.array([doc["result"]["losses"] for doc in docs], dtype=float)
        for doc, loss in zip(docs, scalarised(losses, weights), strict=True):
            doc["result"]["loss"] = float(loss)

    def _penalise(self) -> None:
        """Constraints: give every finished trial that broke one, in each objective, a loss
        worse than every feasible trial's (:func:`nbopt.tuning._constraints.penalised`),
        from the losses it reported, afresh before each proposal as the trials grow."""
        docs = [doc for doc in self._trials.trials if "violation" in doc["result"]]
        if not docs:
            return
        reported = np.array([doc["result"]["reported"] for doc in docs], dtype=float)
        violations = np.array([doc["result"]["violation"] for doc in docs], dtype=float)
        for doc, losses in zip(docs, penalised(reported, violations), strict=True):
            if self._objectives is not None:
                doc["result"]["losses"] = [float(loss) for loss in losses]
            else:
                doc["result"]["loss"] = float(losses[0])

    def _filled(self, doc: dict[str, Any], trial: Trial) -> dict[str, Any]:
        """Hyperopt's document for ``doc`` completed with the outcome of ``trial``."""
        losses = self._objectives.losses(trial) if self._objectives is not None else None
        if losses is not None:
            # The loss is set from these before each proposal (``_scalarise``).
            doc["result"] = {"status": base.STATUS_OK, "loss": 0.0, "losses": list(losses)}
        elif trial.usable and self._objectives is None:
            doc["result"] = {"status": base.STATUS_OK, "loss": self._sign * trial.value}
        else:
            doc["result"] = {"status": base.STATUS_FAIL}
        if self._constraints is not None and doc["result"]["status"] == base.STATUS_OK:
            # What the trial reported is kept apart from the losses the algorithm reads,
            # which _penalise rewrites.
            doc["result"]["reported"] = list(losses or [doc["result"]["loss"]])
            doc["result"]["violation"] = self._constraints.violation(trial)
        doc["state"] = base.JOB_STATE_DONE
        # Hyperopt's documents carry naive UTC times; algo=atpe reads them.
        doc["book_time"] = _utc(trial.started)
        doc["refresh_time"] = _utc(trial.started + trial.duration)
        return doc


def identity(vals: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    """A configuration's identity: its labels and values (NumPy numbers hash and compare
    like Python's, so a proposal and the same configuration read from a study match)."""
    return frozenset(vals.items())


_EPOCH = datetime.datetime(1970, 1, 1)


def _utc(timestamp: float) -> datetime.datetime:
    """A naive UTC time, as Hyperopt keeps them."""
    return _EPOCH + datetime.timedelta(seconds=timestamp)


def _not_called(params: Any) -> Any:
    raise AssertionError("nbopt evaluates the objective itself")
