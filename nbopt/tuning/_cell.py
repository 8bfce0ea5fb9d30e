"""``%%tune``: a notebook cell as the objective.

Top-level assignments whose value is a space function (``lr = loguniform(1e-4, 1e-1)``) are
the search dimensions. Each trial runs the rest of the cell in its own namespace, a copy of
the notebook's with the trial's values assigned, so trials do not leak into each other or
into the notebook. The metric is the variable named by ``metric=``, or the value of the
cell's last expression. Afterwards :meth:`CellObjective.publish` puts the best trial's values
and everything it assigned (a trained model, say) into the notebook.
"""

from __future__ import annotations

import ast
import itertools
import linecache
from collections.abc import MutableMapping, Sequence
from typing import Any, NoReturn

from nbopt.errors import ConfigError, did_you_mean
from nbopt.events import Event
from nbopt.space import SPACE_FUNCTIONS, Dimension
from nbopt.tuning._errors import StopSearch
from nbopt.tuning.events import TrialFinished

_cell_counter = itertools.count(1)


class CellObjective:
    """A cell's code, split into its dimensions and the code one trial runs."""

    def __init__(
        self,
        source: str,
        namespace: MutableMapping[str, Any],
        metric: str | Sequence[str] | None,
    ) -> None:
        self.namespace = namespace
        try:
            module = ast.parse(source)
        except SyntaxError as exc:
            raise ConfigError(f"the cell is not valid Python: {exc}") from None
        self.space: dict[str, Dimension] = {}
        body = []
        for statement in module.body:
            name = _placeholder_name(statement)
            if name is None:
                body.append(statement)
            else:
                self.space[name] = self._dimension(name, statement)
        if not self.space:
            raise ConfigError(
                "found no search dimension in the cell; assign them at the top level, "
                "e.g. lr = loguniform(1e-4, 1e-1)"
            )
        # Several objectives: the cell assigns each metric's variable.
        self.metric = metric if metric is None or isinstance(metric, str) else tuple(metric)
        metric_expression = None
        if metric is None:
            if not body or not isinstance(body[-1], ast.Expr):
                raise ConfigError(
                    "the cell needs the metric: end it with the metric (e.g. val_loss) or name "
                    "it with metric="
                )
            metric_expression = body.pop().value
            if isinstance(metric_expression, ast.Name):
                self.metric, metric_expression = metric_expression.id, None
        self._filename = f"<%%tune cell {next(_cell_counter)}>"
        # Registering the source lets tracebacks of failed trials show the cell's lines.
        linecache.cache[self._filename] = (
            len(source),
            None,
            source.splitlines(True),
            self._filename,
        )
        self._body = ast.Module(body=body, type_ignores=[])
        self._metric_ast = ast.Expression(metric_expression) if metric_expression else None
        self._compile()
        self.last_assigned: dict[str, Any] = {}
        self._metric_seen = False
        self.best_assigned: dict[str, Any] | None = None
        self._best_number: int | None = None

    def _compile(self) -> None:
        self._code = compile(self._body, self._filename, "exec")
        self._metric_code = (
            compile(self._metric_ast, self._filename, "eval") if self._metric_ast else None
        )

    def sendable_namespace(self) -> dict[str, Any]:
        """The notebook variables the cell's code names: all a trial in another process needs."""
        trees = [self._body] + ([self._metric_ast] if self._metric_ast else [])
        names = {node.id for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Name)}
        return {name: self.namespace[name] for name in names if name in self.namespace}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for Ray workers) with only the variables the cell uses, and no code objects."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_code", "_metric_code")}
        state.update(namespace=self.sendable_namespace(), last_assigned={}, best_assigned=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compile()

    def _dimension(self, name: str, statement: ast.Assign) -> Dimension:
        from nbopt import space

        scope = dict(self.namespace)
        scope.update({fn: getattr(space, fn) for fn in SPACE_FUNCTIONS})
        try:
            value = eval(compile(ast.Expression(statement.value), "<%%tune>", "eval"), scope)
        except Exception as exc:
            raise ConfigError(
                f"cannot evaluate the dimension {name}: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(value, Dimension):
            raise ConfigError(
                f"{name} = ... is not a search dimension (got {type(value).__name__})"
            )
        return value

    def __call__(self, params: dict[str, Any]) -> Any:
        """Run the cell once with ``params``; returns the metric (as ``{name: value}`` if named).

        What the run assigned is kept in ``last_assigned`` however it ended (a trial stopped
        early keeps the state it had reached).
        """
        trial_namespace = dict(self.namespace)
        trial_namespace.update(params)
        try:
            exec(self._code, trial_namespace)
            if self._metric_code is not None:
                value = eval(self._metric_code, trial_namespace)
            elif isinstance(self.metric, tuple):
                for name in self.metric:
                    if name not in trial_namespace:
                        self._missing_metric(name, trial_namespace, params)
                self._metric_seen = True
                return {name: trial_namespace[name] for name in self.metric}
            elif self.metric not in trial_namespace:
                self._missing_metric(self.metric, trial_namespace, params)
            else:
                value = trial_namespace[self.metric]
                self._metric_seen = True
        finally:
            self.last_assigned = {
                key: item
                for key, item in trial_namespace.items()
                if key != "__builtins__"
                and (key not in self.namespace or self.namespace[key] is not item)
            }
        return value if self.metric is None else {self.metric: value}

    def _missing_metric(
        self, metric: str, namespace: dict[str, Any], params: dict[str, Any]
    ) -> NoReturn:
        """The cell ran but did not assign the metric: on the first trial, the search stops
        (every trial would fail the same way); later, only this trial fails."""
        if self._metric_seen:
            raise NameError(f"the cell did not assign the metric {metric!r}")
        assigned = sorted(
            key
            for key, item in namespace.items()
            if key not in params
            and key != "__builtins__"
            and (key not in self.namespace or self.namespace[key] is not item)
        )
        hint = did_you_mean(metric, assigned)
        listed = f"; it assigned {', '.join(assigned)}" if assigned else ""
        raise StopSearch(f"metric={metric}: the cell ran but did not assign {metric}{hint}{listed}")

    def track_best(self, event: Event) -> None:
        """Event callback: keep what the best trial assigned (only the best, to free memory)."""
        if not isinstance(event, TrialFinished) or event.best is None:
            return
        if event.best.number == event.trial.number:
            self.best_assigned = self.last_assigned
            self._best_number = event.trial.number

    def keep(self, number: int, assigned: dict[str, Any]) -> None:
        """Take ``assigned`` as what trial ``number`` assigned: the best trial, run in a worker
        process (``parallel=N``), whose variables came back from there."""
        self.best_assigned, self._best_number = assigned, number

    def publish(self, best_number: int | None, best_params: dict[str, Any] | None) -> list[str]:
        """Put the best trial's values into the notebook; returns the names assigned."""
        if best_params is None:
            return []
        values = {}
        if self.best_assigned is not None and self._best_number == best_number:
            values.update(self.best_assigned)
        values.update(best_params)  # the trial's own values win over anything it reassigned
        self.namespace.update(values)
        return sorted(values)


def _placeholder_name(statement: ast.stmt) -> str | None:
    """``lr`` for ``lr = loguniform(...)`` (or ``nbopt.loguniform(...)``) at the top level.

    Only space functions called by their bare name or through ``nbopt`` count, so
    ``pick = random.choice(items)`` or ``noise = np.random.uniform()`` stay ordinary code.
    """
    if not (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and isinstance(statement.value, ast.Call)
    ):
        return None
    func = statement.value.func
    if isinstance(func, ast.Name):
        called = func.id
    elif (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "nbopt"
    ):
        called = func.attr
    else:
        return None
    return statement.targets[0].id if called in SPACE_FUNCTIONS else None
