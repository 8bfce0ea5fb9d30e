"""MkDocs hook: the demo notebooks of ``demo_notebooks/`` as pages of the site.

The notebooks live beside the package, where the test suite executes them; this hook adds each
one to the site's files as ``demo_notebooks/<name>.ipynb`` (so pages link to it by that path)
without copying it into ``docs/``, before mkdocs-jupyter turns notebook files into pages. They
are rendered as stored, never executed at build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "demo_notebooks"


@event_priority(100)  # before mkdocs-jupyter's on_files, which makes pages of notebook files
def on_files(files: Files, config: MkDocsConfig) -> Files:
    for notebook in sorted((ROOT / FOLDER).glob("*.ipynb")):
        files.append(
            File(
                f"{FOLDER}/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files
