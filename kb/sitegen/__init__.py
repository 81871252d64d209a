"""The documentation site, generated from the knowledge base.

    kd site build            # the store in service -> build-site/docs (markdown) -> build-site/html

1. `model.load` reads everything the site shows from the store with SPARQL;
2. `pages.SiteWriter` renders the jinja2 templates of site/templates into markdown in the
   docs directory, copies the benchmark plots, the downloads, and the local KaTeX and
   mermaid files (from web/node_modules: nothing is fetched from another host);
3. mkdocs-material builds the HTML, in strict mode (any warning fails the build), into a
   fresh directory that then replaces the previous site in one rename.

Technique modules are read as text through their `kdo:pythonModule` path and parsed with
`ast`, never imported: building the site does not import torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Paths
from ..store import KnowledgeBase
from . import model as model_mod
from .pages import SiteWriter

SITE_SOURCE = "site"  # templates/, queries/, assets/ (relative to the project root)
DEFAULT_OUT = "build-site"

# Front-end files the site serves itself, copied from the npm packages in web/node_modules.
VENDOR = {
    "katex": ("katex/dist", ["katex.min.js", "katex.min.css", "fonts"]),
    "mermaid": ("mermaid/dist", ["mermaid.min.js"]),
}


class SiteBuildError(Exception):
    """The site could not be built; the previous site (if any) is unchanged."""


@dataclass
class SiteReport:
    html_dir: Path
    docs_dir: Path
    pages: int  # HTML pages written by mkdocs (404.html included)
    markdown_pages: int
    concepts: int
    papers: int
    seconds: float
    generate_seconds: float

    def __str__(self) -> str:
        return (f"built the site: {self.pages} HTML pages ({self.concepts} concepts, {self.papers} papers) "
                f"in {self.seconds:.1f} s (markdown {self.generate_seconds:.1f} s) -> {self.html_dir}")


def _copy_vendor(root: Path, docs: Path) -> None:
    modules = root / "web" / "node_modules"
    for name, (folder, items) in VENDOR.items():
        src_dir = modules / folder
        dest = docs / "assets" / "vendor" / name
        dest.mkdir(parents=True, exist_ok=True)
        for item in items:
            src = src_dir / item
            if not src.exists():
                raise SiteBuildError(f"{src} is missing: install the front-end packages first "
                                     f"(`make install`, or `cd web && npm ci`)")
            if src.is_dir():
                shutil.copytree(src, dest / item, dirs_exist_ok=True)
            else:
                shutil.copyfile(src, dest / item)


def generate(base: KnowledgeBase, docs: Path, root: Path | None = None) -> SiteWriter:
    """Write the markdown pages and their files into `docs` (emptied first); no HTML yet."""
    root = root or Paths.from_env().root
    source = root / SITE_SOURCE
    if docs.exists():
        shutil.rmtree(docs)
    docs.mkdir(parents=True)
    model = model_mod.load(base)
    writer = SiteWriter(base, model, root, docs, source / "templates", source / "queries")
    writer.write_all()
    shutil.copytree(source / "assets", docs / "assets", dirs_exist_ok=True)
    _copy_vendor(root, docs)
    (docs.parent / "nav.json").write_text(json.dumps(navigation(model), indent=1))
    return writer


def navigation(m: model_mod.Model) -> list:
    """The site's navigation: by axis (taxonomy), by role (concepts), papers, results, recipes."""
    concepts: list = ["concepts/index.md"]
    for role, (_, plural) in model_mod.ROLES.items():
        members = m.by_role(role)
        if members:
            concepts.append({plural: [{c.label: f"concepts/{c.name}.md"} for c in members]})
    papers = ["papers/index.md"] + [{f"{p.short}: {p.title}": f"papers/{p.key}.md"}
                                    for p in m.papers.values()]
    return [
        {"Home": "index.md"},
        {"Taxonomy": ["taxonomy/index.md"] + [{a.label: f"taxonomy/{a.name}.md"} for a in m.axes.values()]},
        {"Concepts": concepts},
        {"Papers": papers},
        {"Results": ["results/index.md", {"When does distillation help?": "regimes/index.md"}]},
        {"Use it on your own model": "use/index.md"},
        {"SPARQL cookbook": "cookbook/index.md"},
        {"Data": [{"Downloads": "downloads/index.md"}, {"Implementations": "implementations/index.md"},
                  {"Facts": "facts/index.md"}, {"Sources": "sources/index.md"}]},
    ]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_mkdocs(root: Path, docs: Path, html_dir: Path) -> None:
    """`mkdocs build --strict` with the project's mkdocs.yml, into `html_dir`."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    collect = _Collect()
    logger = logging.getLogger("mkdocs")
    logger.addHandler(collect)
    try:
        config = load_config(config_file=str(root / "mkdocs.yml"), strict=True,
                             docs_dir=str(docs), site_dir=str(html_dir))
        mkdocs_build(config)
    except (MkDocsException, SystemExit) as exc:
        details = "\n".join(collect.messages[-20:])
        raise SiteBuildError(f"mkdocs build --strict failed: {exc}\n{details}") from exc
    finally:
        logger.removeHandler(collect)


def build_site(base: KnowledgeBase, out: Path | None = None, root: Path | None = None) -> SiteReport:
    """Generate the markdown into <out>/docs and build the HTML into <out>/html, atomically."""
    started = time.perf_counter()
    root = (root or Paths.from_env().root).resolve()
    out = (out or root / DEFAULT_OUT).resolve()
    docs, html_dir = out / "docs", out / "html"
    writer = generate(base, docs, root)
    generated = time.perf_counter() - started
    staging = out / f"html.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        run_mkdocs(root, docs, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # Put the new site in place: one rename, then remove the old one.
    old = out / f"html.old-{os.getpid()}"
    if html_dir.exists():
        html_dir.rename(old)
    staging.rename(html_dir)
    shutil.rmtree(old, ignore_errors=True)
    pages = sum(1 for _ in html_dir.rglob("*.html"))
    return SiteReport(html_dir, docs, pages, len(writer.pages), writer.m.counts["concepts"],
                      writer.m.counts["papers"], time.perf_counter() - started, generated)


__all__ = ["build_site", "generate", "run_mkdocs", "navigation", "SiteReport", "SiteBuildError"]
