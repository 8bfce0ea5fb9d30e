"""What every magic does the same way: parse its line, call the engine, speak the user's
language in every error, and store the result however the run ends.

A magic module declares its options in a :class:`~nbopt.magics.options.Schema`, each option
naming the engine parameter it sets (``eval=`` sets ``evaluate``). A :class:`MagicCall` parses
the line, builds the engine's keyword arguments from the options, turns nbopt's input errors
into IPython's one-line ``UsageError`` (an engine's ``evaluate=`` becomes the user's
``eval=``), and keeps the result the engine reports when its run ends, so that it is stored in
``_nbopt`` and ``out=`` on success, after an error and after an interrupt alike.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import linecache
import re
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from IPython.core.error import UsageError

from nbopt._imports import MissingDependency
from nbopt.errors import ConfigError, did_you_mean
from nbopt.events import Event, RunFinished
from nbopt.magics.option_types import Enum, Identifier, Name, Text
from nbopt.magics.options import Option, ParsedLine, Schema
from nbopt.ui import PROGRESS_MODES

RESULT_VARIABLE = "_nbopt"


def common_options(result: str) -> list[Option]:
    """``progress=``, ``logdir=`` and ``out=``, shared by the magics."""
    return [
        Option(
            "progress",
            Enum(*PROGRESS_MODES),
            None,
            "live view: a widget in a notebook, text elsewhere (default: "
            "%config NbOptMagics.progress, itself auto)",
            parameter=None,
        ),
        Option(
            "logdir",
            Text("path|none"),
            None,
            "TensorBoard log directory, or none (default: %config NbOptMagics.logdir)",
            parameter=None,
        ),
        Option(
            "out",
            Identifier(),
            None,
            f"store the {result} in this variable (also in _nbopt)",
            parameter=None,
        ),
    ]


class MagicCall:
    """One call of a magic: the parsed line, the engine call made from it, its result.

    Args:
        magics: The ``NbOptMagics`` instance (its shell and its ``%config`` settings).
        schema: The magic's options.
        line: The magic's line.
        prefix: How error lines start (``"%%optimize"``); by default ``%`` and the schema's
            name.
    """

    def __init__(self, magics: Any, schema: Schema, line: str, prefix: str | None = None) -> None:
        self.magics = magics
        self.shell = magics.shell
        self.namespace: MutableMapping[str, Any] = self.shell.user_ns
        self.schema = schema
        self.prefix = prefix or f"%{schema.magic}"
        self.result: Any = None
        try:
            self.parsed: ParsedLine = schema.parse(line, self.namespace)
        except ConfigError as exc:
            # The grammar names the schema (%optimize auto); the user typed the magic's prefix.
            message = self.speak(str(exc))
            own = f"%{schema.magic}"
            if message.startswith(own):
                message = self.prefix + message[len(own) :]
            raise UsageError(message) from None

    def __getitem__(self, option: str) -> Any:
        return self.parsed[option]

    def given(self, option: str) -> bool:
        return option in self.parsed.given

    @contextlib.contextmanager
    def usage_errors(self) -> Iterator[None]:
        """Show nbopt's input errors, and an optional package that is missing, as IPython's
        one-line ``UsageError``, naming options as the user wrote them."""
        try:
            yield
        except (ConfigError, MissingDependency) as exc:
            raise UsageError(f"{self.prefix}: {self.speak(str(exc))}") from None

    def model_argument(self, usage: str) -> Any:
        """The ``torch.nn.Module`` that the line's positional argument names; a
        ``UsageError`` showing ``usage`` when there is none, or naming what is wrong with it."""
        if not self.parsed.positional:
            raise self.fail(f"name the model, e.g. {usage}")
        try:
            return Name("nn.Module", module_check).parse(self.parsed.positional[0], self.namespace)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def fail(self, message: str) -> UsageError:
        """A ``UsageError`` for this magic, to raise: ``raise call.fail("...")``."""
        return UsageError(f"{self.prefix}: {message}")

    def speak(self, message: str) -> str:
        """``message`` with each engine parameter written as the option that sets it."""
        for option in self.schema.options.values():
            if option.parameter not in (None, option.name):
                message = re.sub(rf"\b{re.escape(option.parameter)}=", f"{option.name}=", message)
        return message

    def settings(self) -> tuple[str, str | None]:
        """The ``progress`` mode and TensorBoard ``logdir`` (None: off) for this call."""
        progress = self.parsed["progress"] or self.magics.progress
        logdir = self.parsed["logdir"] if self.parsed["logdir"] is not None else self.magics.logdir
        if logdir in ("", "none", "None"):
            logdir = None
        return progress, logdir

    def arguments(self, *, only_given: bool = False, **values: Any) -> dict[str, Any]:
        """The engine's keyword arguments: each option with a parameter, by its parameter's
        name, then ``progress`` and ``logdir``; ``values`` (by parameter name) override them.
        ``only_given``: options not on the line are left out, so the engine's defaults hold."""
        arguments = {
            option.parameter: self.parsed[option.name]
            for option in self.schema.options.values()
            if option.parameter is not None and (not only_given or option.name in self.parsed.given)
        }
        if "progress" in self.schema.options:
            arguments["progress"], arguments["logdir"] = self.settings()
        arguments.update(values)
        return arguments

    def run(self, engine: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``engine(*args, **kwargs)`` with a callback that keeps the result its run
        reports, and store that result in ``_nbopt`` and ``out=`` however the call ends: done,
        failed (what finished before the error) or interrupted (what finished before it).
        ``ConfigError`` becomes a ``UsageError``; everything else propagates as it is."""
        kwargs["callbacks"] = [*kwargs.get("callbacks", ()), self._keep]
        try:
            with self.usage_errors():
                return engine(*args, **kwargs)
        finally:
            if self.result is not None:
                self.store(self.result)

    def _keep(self, event: Event) -> None:
        if isinstance(event, RunFinished) and event.result is not None:
            self.result = event.result

    def store(self, result: Any) -> None:
        """Keep ``result`` in ``_nbopt``, in the magics' ``last_results`` under this magic's
        name, and, if asked, in the variable ``out=``."""
        self.namespace[RESULT_VARIABLE] = result
        self.magics.last_results[self.schema.magic] = result
        out = self.parsed.values.get("out")
        if isinstance(out, str):
            self.namespace[out] = result

    def reject_unused(self, dependent: dict[str, tuple[str, Any]]) -> None:
        """A UsageError for an option that would be ignored: ``dependent`` maps an option to
        the option and value it needs (``{"rung": ("stop", "asha")}``)."""
        for option, (needs, value) in dependent.items():
            if self.given(option) and self.parsed[needs] != value:
                raise self.fail(f"{option}= only applies with {needs}={value}")


def check_names_exist(
    call: MagicCall, options: tuple[str, ...], cell: str, cell_names: set[str] | None = None
) -> None:
    """UsageError, before anything runs, for a name option that names nothing: a name is fine
    if the notebook has it or the cell assigns it."""
    created = assigned_names(cell) if cell_names is None else cell_names
    for option in options:
        names = call[option]
        for name in (names,) if isinstance(names, str) or names is None else names:
            if name is None or name in call.namespace or name in created:
                continue
            candidates = [k for k in call.namespace if not k.startswith("_")] + sorted(created)
            hint = did_you_mean(name, candidates)
            raise call.fail(
                f"{option}=: name {name!r} is not defined in the notebook nor assigned by the "
                f"cell{hint}"
            )


def assigned_names(source: str) -> set[str]:
    """Names a cell binds in the notebook's namespace when it runs.

    Assignments anywhere outside function and class bodies count (inside ``if``, ``for``,
    ``with`` or ``try`` too), as do ``def``/``class`` names and imports; an annotation without
    a value does not. Lets a magic accept ``model=net`` for a variable the cell is about to
    create, while still rejecting a misspelt name before the cell runs.
    """
    try:
        module = ast.parse(source)
    except SyntaxError:
        return set()

    class Binder(ast.NodeVisitor):
        def __init__(self) -> None:
            self.names: set[str] = set()

        def visit_Name(self, node: ast.Name) -> None:
            if isinstance(node.ctx, ast.Store):
                self.names.add(node.id)

        def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
            if node.value is not None:
                self.visit(node.target)
                self.visit(node.value)

        def visit_FunctionDef(self, node: ast.AST) -> None:
            self.names.add(node.name)  # type: ignore[attr-defined]

        visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

        def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
            self.names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)

        visit_ImportFrom = visit_Import

        def visit_Lambda(self, node: ast.AST) -> None:
            """A lambda's or a comprehension's variables are its own."""

        visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda

    binder = Binder()
    binder.visit(module)
    return binder.names


def is_module(value: Any) -> bool:
    """True for a ``torch.nn.Module``, without importing torch."""
    return any(
        cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module"
        for cls in type(value).__mro__
    )


def callable_check(value: Any) -> str | None:
    """For a ``Name`` option: None if ``value`` is callable, else what is wrong."""
    return None if callable(value) else "is not callable"


def module_check(value: Any) -> str | None:
    """For a ``Name`` option: None if ``value`` is an ``nn.Module``, else what is wrong."""
    return None if is_module(value) else f"is a {type(value).__name__}, not an nn.Module"


_cells = itertools.count(1)


def compile_cell(source: str, magic: str) -> Any:
    """Compile a cell's code so that its tracebacks show the cell's own lines.

    The source is registered in ``linecache`` under a name such as ``<%%optimize cell 3>``,
    as IPython does for ordinary cells.
    """
    filename = f"<{magic} cell {next(_cells)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")
