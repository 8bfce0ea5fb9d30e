"""What every magic does the same way: shared options, error translation, storing results."""

from __future__ import annotations

import contextlib
import itertools
import linecache
from collections.abc import Iterator, MutableMapping
from typing import Any

from IPython.core.error import UsageError

from nbopt.errors import ConfigError, did_you_mean
from nbopt.options import Enum, Identifier, Option, ParsedLine, Text
from nbopt.ui.progress import PROGRESS_MODES

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
        ),
        Option(
            "logdir",
            Text("path|none"),
            None,
            "TensorBoard log directory, or none (default: %config NbOptMagics.logdir)",
        ),
        Option("out", Identifier(), None, f"store the {result} in this variable (also in _nbopt)"),
    ]


def view_settings(magics: Any, parsed: ParsedLine) -> tuple[str, str | None]:
    """The ``progress`` mode and TensorBoard ``logdir`` (None: off) for this call."""
    progress = parsed["progress"] or magics.progress
    logdir = parsed["logdir"] if parsed["logdir"] is not None else magics.logdir
    if logdir in ("", "none", "None"):
        logdir = None
    return progress, logdir


@contextlib.contextmanager
def usage_errors(magic: str) -> Iterator[None]:
    """Show nbopt's input errors as IPython's one-line ``UsageError``."""
    try:
        yield
    except ConfigError as exc:
        raise UsageError(f"%{magic}: {exc}") from None


def store_result(namespace: MutableMapping[str, Any], result: Any, out: str | None) -> None:
    """Keep ``result`` in ``_nbopt`` and, if asked, in the variable ``out``."""
    namespace[RESULT_VARIABLE] = result
    if out:
        namespace[out] = result


def assigned_names(source: str) -> set[str]:
    """Names a cell binds in the notebook's namespace when it runs.

    Assignments anywhere outside function and class bodies count (inside ``if``, ``for``,
    ``with`` or ``try`` too), as do ``def``/``class`` names and imports; an annotation without
    a value does not. Lets a magic accept ``model=net`` for a variable the cell is about to
    create, while still rejecting a misspelt name before the cell runs.
    """
    import ast

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


def check_names_exist(
    magic: str, names: dict[str, str | None], namespace: MutableMapping[str, Any], cell: str
) -> None:
    """UsageError, before anything runs, for a name option that names nothing.

    ``names`` maps option -> variable name (None when not given). A name is fine if the
    notebook has it or the cell assigns it at its top level.
    """
    created = assigned_names(cell)
    for option, name in names.items():
        if name is None or name in namespace or name in created:
            continue
        candidates = [k for k in namespace if not k.startswith("_")] + sorted(created)
        hint = did_you_mean(name, candidates)
        raise UsageError(
            f"%{magic} {option}=: name {name!r} is not defined in the notebook "
            f"nor assigned by the cell{hint}"
        )


def is_module(value: Any) -> bool:
    """True for a ``torch.nn.Module``, without importing torch."""
    return any(
        cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module"
        for cls in type(value).__mro__
    )


_cells = itertools.count(1)


def compile_cell(source: str, magic: str) -> Any:
    """Compile a cell's code so that its tracebacks show the cell's own lines.

    The source is registered in ``linecache`` under a name such as ``<%%optimize cell 3>``,
    as IPython does for ordinary cells.
    """
    filename = f"<{magic} cell {next(_cells)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")
