"""MkDocs hook: each magic's options table and ``%magic?`` text, generated at build time.

A page marks where a magic's options table goes with ``<!-- options: NAME -->`` and where the
text that ``%NAME?`` prints goes with ``<!-- help: NAME -->``. Both are read from the package
itself, the option schema and the magic's docstring, so the site says what the code does.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
from typing import Any

from mkdocs.exceptions import PluginError

# The one place that knows where the magics live: each magic's module in nbopt/magics/.
OPTIONS = {
    "tune": "nbopt.magics.tune:SCHEMA",
    "optimize": "nbopt.magics.optimize:SCHEMA",
    "optimize auto": "nbopt.magics.optimize_auto:SCHEMA",
    "batchsize": "nbopt.magics.batchsize:SCHEMA",
    "lr_find": "nbopt.magics.lr_find:SCHEMA",
    "accelerate": "nbopt.magics.accelerate:SCHEMA",
}
# ``%NAME?`` prints the docstring of this class's method NAME.
MAGICS_CLASS = "nbopt.magics:NbOptMagics"

_MARKER = re.compile(r"^<!-- (options|help): ([a-z][a-z_ ]*?) -->$", re.MULTILINE)


def resolve(reference: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, _, attribute = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"options hook: cannot find {reference} ({exc}); update the table at the top of "
            "docs/hooks/options.py"
        ) from exc


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def options_table(name: str) -> str:
    """The Markdown table of a magic's options: name, type, default and meaning."""
    reference = OPTIONS.get(name)
    if reference is None:
        raise PluginError(f"options hook: no magic {name!r}; known: {', '.join(OPTIONS)}")
    schema = resolve(reference)
    rows = ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    for option in schema.options.values():
        default = "" if option.default is None else f"`{option.default}`"
        meaning = option.help
        if option.flag:
            meaning += f" (a bare `{option.name}` means `{option.name}=True`)"
        rows.append(
            f"| `{option.name}` | {_cell(option.type.description)} | {default} | {_cell(meaning)} |"
        )
    return "\n".join(rows)


def help_text(name: str) -> str:
    """What ``%NAME?`` prints, in a collapsed block."""
    method = getattr(resolve(MAGICS_CLASS), name.split()[0], None)
    if method is None or not method.__doc__:
        raise PluginError(f"options hook: {MAGICS_CLASS} has no documented magic {name!r}")
    text = textwrap.indent(inspect.cleandoc(method.__doc__), " " * 4)
    return f'??? info "What `%{name}?` prints"\n\n    ```text\n{text}\n    ```'


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        kind, name = match.groups()
        return options_table(name) if kind == "options" else help_text(name)

    return _MARKER.sub(replace, markdown)
