"""mkdocs hook (named in mkdocs.yml): the navigation comes from the knowledge base.

`kd site build` writes it to nav.json beside the generated docs directory, so that a plain
`mkdocs build --strict` after it builds the same site.
"""

from __future__ import annotations

import json
from pathlib import Path


def on_config(config, **kwargs):
    nav_file = Path(config["docs_dir"]).parent / "nav.json"
    if nav_file.is_file():
        config["nav"] = json.loads(nav_file.read_text())
    return config
