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
from nbopt.tuning._algorithms import Algorithm, SearchContext, trial_doc, vals_key
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
    ) -> None:
        self.algo = algorithm.name
        self._space = space
        self.size = grid_size(space)
        self.deterministic = deterministic
        self._seed = seed
        self._sign = 1.0 if mode == "min" else -1.0
        hp_space = to_hyperopt(space)
        self.fingerprint = fingerprint(hp_space)
        self._domain = base.Domain(_not_called, hp_space)
        self._param_nodes = [
            (node, node.arg["label"].obj)
            for node in pyll.dfs(self._domain.expr)
            if node.name == "hyperopt_param"
        ]
        self._suggest = algorithm.build(SearchContext(space, max_evals))
        self._trials = base.Trials()
        self._seen: set[str] = set()
        self._restored = 0
        self._rng: np.random.Generator | None = None

    def params(self, vals: dict[str, Any]) -> Any:
        """The configuration encoded by ``vals`` (choice indices become the chosen values)."""
        memo = {
            node: vals.get(label, pyll.base.GarbageCollected) for node, label in self._param_nodes
        }
        return pyll.rec_eval(self._domain.expr, memo=memo, print_node_on_error=False)

    def restore(self, trial: Trial) -> None:
        """Replay a finished trial of an earlier session."""
        tid = self._trials.new_trial_ids(1)[0]
        self._seen.add(vals_key(trial.vals))
        self._insert(trial_doc(self._domain, self._trials, tid, trial.vals), trial)
        self._restored += 1

    def exhausted(self) -> bool:
        return self.deterministic and self.size is not None and len(self._seen) >= self.size

    def ask(self) -> Proposal | None:
        """The next configuration to evaluate, or None when the space is exhausted."""
        if self.exhausted():
            return None
        if self._rng is None:
            # A resumed search draws new seeds: replaying the first session's would propose
            # its configurations again.
            resumed = self._seed is not None and self._restored
            self._rng = np.random.default_rng(
                [self._seed, self._restored] if resumed else self._seed
            )
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
        self._seen.add(vals_key(vals))
        return Proposal(trial_doc(self._domain, self._trials, tid, vals), vals, self.params(vals))

    def _accept(self, vals: dict[str, Any]) -> bool:
        key = vals_key(vals)
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
            self._insert(proposal.doc, trial)
        else:
            self._seen.discard(vals_key(proposal.vals))

    def _insert(self, doc: dict[str, Any], trial: Trial) -> None:
        if trial.usable:
            doc["result"] = {"status": base.STATUS_OK, "loss": self._sign * trial.value}
        else:
            doc["result"] = {"status": base.STATUS_FAIL}
        doc["state"] = base.JOB_STATE_DONE
        # Hyperopt's documents carry naive UTC times; algo=atpe reads them.
        doc["book_time"] = _utc(trial.started)
        doc["refresh_time"] = _utc(trial.started + trial.duration)
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).replace(tzinfo=None)


def _not_called(params: Any) -> Any:
    raise AssertionError("nbopt evaluates the objective itself")
