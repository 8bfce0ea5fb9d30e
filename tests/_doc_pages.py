"""Run the documentation's worked examples the way the site build runs them.

A page's executed blocks are the fenced ```` ```python exec="on" ... ``` ```` blocks that
markdown-exec runs at build time; blocks of one ``session="..."`` share their variables, in
page order. The tests read those variables and compare them with independent computations.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXECUTED_BLOCK = re.compile(
    r'^```python exec="on"(?P<options>[^\n]*)\n(?P<code>.*?)^```$', re.MULTILINE | re.DOTALL
)
_SESSION = re.compile(r'session="([^"]+)"')


@functools.cache
def page_sessions(page: str) -> dict[str, dict[str, Any]]:
    """The namespaces of a page's executed blocks, by session, after running them all."""
    text = (DOCS / page).read_text(encoding="utf-8")
    sessions: dict[str, dict[str, Any]] = {}
    for number, block in enumerate(EXECUTED_BLOCK.finditer(text)):
        session = _SESSION.search(block["options"])
        name = session.group(1) if session else f"block {number}"  # no session: isolated
        namespace = sessions.setdefault(name, {"__name__": "__main__"})
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block["code"], f"{page} [{name}]", "exec"), namespace)
    return sessions
