"""Write the site's markdown pages from the model, through the jinja2 templates in site/templates.

Pages and where they live in the docs directory (mkdocs turns `x/y.md` into `/x/y/`):

    index.md                    home
    taxonomy/index.md           the taxonomy, one diagram per axis
    taxonomy/<Axis>.md          one page per axis
    concepts/index.md           every concept, by role
    concepts/<Name>.md          one page per concept (kd:Name), with its RDF beside it
    papers/index.md             every paper, oldest first
    papers/<key>.md             one page per paper (kdp:key)
    results/index.md            every benchmark result (anchors: <module>--<experiment>)
    cookbook/index.md           SPARQL recipes with their current results
    downloads/index.md          the knowledge base in every serialization
    facts/, sources/, implementations/index.md   anchors for the kdf:, kds:, kdi: IRIs
"""

from __future__ import annotations

import ast
import html
import json
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
import pyoxigraph as ox

from ..formats import serialize_rdf
from ..namespaces import BASE, KD, PREFIXES, compact
from ..store import KnowledgeBase
from . import code as codemod
from .curves import curve_svg, summary as curve_summary
from .forest import forest_svg
from .model import FACT_KINDS, ROLES, Model, Result, local

EXAMPLE_TIMES = "example_times.json"  # written by scripts/time_budgets.py --only examples --write

RDF_FORMATS = {  # extension: (label, pyoxigraph format, media type)
    "ttl": ("Turtle", ox.RdfFormat.TURTLE, "text/turtle"),
    "nt": ("N-Triples", ox.RdfFormat.N_TRIPLES, "application/n-triples"),
    "jsonld": ("JSON-LD", ox.RdfFormat.JSON_LD, "application/ld+json"),
    "rdf": ("RDF/XML", ox.RdfFormat.RDF_XML, "application/rdf+xml"),
}
EXPORT_LABELS = {"ttl": "Turtle", "nt": "N-Triples", "nq": "N-Quads (keeps the named graphs)",
                 "jsonld": "JSON-LD", "rdf": "RDF/XML"}

FACT_KIND_LABELS = {"Advantage": "advantage", "Limitation": "limitation", "HistoricalEvent": "event",
                    "Figure": "figure", "Fact": "note"}

# Entities rather than backslashes: they survive tables, emphasis and the math extension alike.
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "*": "&#42;", "_": "&#95;", "`": "&#96;",
                "[": "&#91;", "]": "&#93;", "\\": "&#92;", "|": "&#124;", "$": "&#36;", "#": "&#35;",
                "~": "&#126;", "^": "&#94;", "=": "&#61;", "+": "&#43;"}


def md(text) -> str:
    """Plain text from the store, safe inside markdown (paragraphs, lists and table cells)."""
    if text is None:
        return ""
    s = " ".join(str(text).split())
    return "".join(_MD_ENTITIES.get(ch, ch) for ch in s)


def md_multiline(text) -> str:
    """Like md(), keeping paragraph breaks."""
    paragraphs = re.split(r"\n\s*\n", str(text or "").strip())
    return "\n\n".join(md(p) for p in paragraphs if p.strip())


def html_text(text) -> str:
    return html.escape(str(text or ""), quote=True)


def pct(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}"


def pts(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:+.{digits}f}"


def pvalue(value) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def mermaid_label(text: str) -> str:
    return '"' + str(text).replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


@dataclass
class Query:
    key: str
    title: str
    description: str
    text: str
    file: str
    kind: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, str | None]]] = field(default_factory=list)  # (text, iri or None)
    total: int = 0
    boolean: bool | None = None
    editor_url: str = ""


class SiteWriter:
    """Renders every page of the site into a docs directory."""

    def __init__(self, base: KnowledgeBase, model: Model, root: Path, docs: Path, templates: Path,
                 queries_dir: Path):
        self.base, self.m, self.root, self.docs = base, model, root, docs
        self.queries_dir = queries_dir
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        )
        self.env.filters.update(md=md, md_multiline=md_multiline, html=html_text, pct=pct, pts=pts,
                                pvalue=pvalue, slug=slug, compact=compact, local=local,
                                docstring=codemod.docstring_markdown, tojson=json.dumps,
                                fact_kind=lambda k: FACT_KIND_LABELS.get(k, k.lower()),
                                extract=lambda key, mapping: mapping.get(key))
        self.pages: list[str] = []
        self.sources: dict[str, codemod.SourceFile] = {}

    # ------------------------------------------------------------ addresses
    def path_of(self, iri: str) -> str | None:
        """The docs path (with #anchor where the IRI has no page of its own) of a resource."""
        m = self.m
        if iri in m.concepts:
            return f"concepts/{local(iri)}.md"
        if iri in m.papers:
            return f"papers/{local(iri)}.md"
        if iri in m.axes:
            return f"taxonomy/{local(iri)}.md"
        if iri in m.sources:
            return f"sources/index.md#{local(iri)}"
        if iri in m.facts:
            return f"facts/index.md#{local(iri)}"
        if iri in m.implementations:
            return f"implementations/index.md#{local(iri)}"
        if iri in m.results:
            return f"results/index.md#{local(iri)}"
        return None

    def rel(self, target: str, here: str) -> str:
        """Relative markdown link from page `here` to docs path `target` (may carry #anchor)."""
        path, _, anchor = target.partition("#")
        if path == here:
            return f"#{anchor}" if anchor else posixpath.basename(path)
        out = posixpath.relpath(path, posixpath.dirname(here) or ".")
        return out + (f"#{anchor}" if anchor else "")

    def _helpers(self, here: str) -> dict:
        m = self.m

        def href(iri: str) -> str:
            target = self.path_of(iri)
            return self.rel(target, here) if target else iri

        def link(iri: str, text: str | None = None) -> str:
            label = text if text is not None else m.label(iri)
            return f"[{md(label)}]({href(iri)})"

        def links(iris, sep: str = ", ") -> str:
            ordered = sorted(set(iris), key=lambda i: m.label(i).lower())
            return sep.join(link(i) for i in ordered) or "–"

        def to(path: str) -> str:
            return self.rel(path, here)

        def paper_ref(iri: str) -> str:
            p = m.papers.get(iri)
            if p is None:
                return link(iri)
            ext = " · ".join(f"[{md(name)}]({url})" for name, url in p.links)
            return f"{link(iri, p.short)}, *{md(p.title)}*" + (f" ({ext})" if ext else "")

        def ref(iri: str) -> str:
            """A paper, a web source or a concept, each the way it is best cited."""
            if iri in m.papers:
                return paper_ref(iri)
            if iri in m.sources:
                s = m.sources[iri]
                web = f" ([web]({s.url}))" if s.url else ""
                return f"{link(iri, s.title)}{web}"
            if iri in m.concepts or iri in m.facts:
                return link(iri)
            return f"<{iri}>"

        def by_label(iris) -> list[str]:
            return sorted(set(iris), key=lambda i: m.label(i).lower())

        def under(category: str, axis) -> list:
            """Concepts below a category on an axis, down to (and including) the next categories."""
            found, todo = [], list(m.concepts[category].children)
            while todo:
                iri = todo.pop()
                if iri in found or iri not in axis.members or iri == category:
                    continue
                found.append(iri)
                if iri not in axis.categories:
                    todo.extend(m.concepts[iri].children)
            return m.sorted_concepts(found)

        def refs(iris, sep: str = ", ") -> str:
            return sep.join(ref(i) for i in iris)

        return {"refs": refs, "under": under, "by_label": by_label, "href": href, "link": link, "links": links, "to": to, "paper_ref": paper_ref, "ref": ref,
                "here": here}

    def render(self, template: str, path: str, **context) -> None:
        text = self.env.get_template(template).render(m=self.m, ROLES=ROLES, FACT_KINDS=FACT_KINDS,
                                                       BASE=BASE, **self._helpers(path), **context)
        target = self.docs / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(re.sub(r"\n{3,}", "\n\n", text), encoding="utf-8")
        self.pages.append(path)

    # ------------------------------------------------------------ pieces
    def mermaid_tree(self, nodes: set[str], focus: str | None = None, direction: str = "LR") -> str:
        """A mermaid flowchart of the broader/narrower edges among `nodes` (techniques rounded)."""
        m = self.m
        lines = [f"flowchart {direction}"]
        ids = {iri: re.sub(r"[^A-Za-z0-9_]", "_", local(iri)) for iri in nodes}
        for iri in sorted(nodes, key=lambda i: m.label(i).lower()):
            c = m.concepts.get(iri)
            shape = "([{}])" if c and c.is_technique else "[{}]"
            lines.append(f"  {ids[iri]}" + shape.format(mermaid_label(m.label(iri))))
        for iri in sorted(nodes):
            c = m.concepts.get(iri)
            for parent in sorted(c.parents if c else []):
                if parent in nodes:
                    lines.append(f"  {ids[parent]} --> {ids[iri]}")
        if focus and focus in ids:
            lines.append("  classDef focus stroke-width:3px")
            lines.append(f"  class {ids[focus]} focus")
        return "\n".join(lines)

    def mermaid_overview(self) -> str:
        """The root, and below it one box per axis holding the categories on that axis."""
        m = self.m
        root, parent = KD + "KnowledgeDistillation", KD + "TrainingMethod"
        lines = ["flowchart TB", f"  {local(parent)}[{mermaid_label(m.label(parent))}]",
                 f"  {local(root)}[{mermaid_label(m.label(root))}]", f"  {local(parent)} --> {local(root)}"]
        for a in m.axes.values():
            # edges go to the box, not into it, so that the box may lay its categories out itself
            lines.append(f"  subgraph {a.name}[{mermaid_label(a.label)}]")
            lines.append("    direction LR")
            for cat in a.categories:
                lines.append(f"    {local(cat)}[{mermaid_label(m.label(cat))}]")
            for cat in a.categories:
                for p in m.concepts[cat].parents:
                    if p in a.categories:
                        lines.append(f"    {local(p)} --> {local(cat)}")
            lines.append("  end")
            lines.append(f"  {local(root)} --> {a.name}")
        return "\n".join(lines)

    def neighbourhood(self, iri: str) -> str:
        c = self.m.concepts[iri]
        order = list(ROLES)  # categories and techniques first, when there are too many to show
        children = sorted(c.children, key=lambda i: (order.index(self.m.concepts[i].role)
                                                     if i in self.m.concepts and self.m.concepts[i].role in order
                                                     else 99, self.m.label(i).lower()))
        shown = set(c.parents) | set(children[:10]) | {iri}
        text = self.mermaid_tree(shown, focus=iri, direction="TB" if len(children) <= 6 else "LR")
        if len(children) > 10:
            text += f"\n  more[{mermaid_label(f'… {len(children) - 10} more')}]\n  {local(iri)} --> more"
        return text

    def source_of(self, impl_iri: str) -> codemod.SourceFile | None:
        impl = self.m.implementations.get(impl_iri)
        if impl is None:
            return None
        if impl.module not in self.sources:
            try:
                self.sources[impl.module] = codemod.read_source(self.root, impl.module)
            except (OSError, SyntaxError, ValueError):
                return None
        return self.sources[impl.module]

    def copy_plot(self, result: Result) -> str | None:
        """Copy the result's plot (results/<module>.png) into the docs; its docs path."""
        if not result.plot:
            return None
        source = (self.root / result.plot).resolve()
        if not source.is_file() or source.suffix.lower() not in {".png", ".svg", ".jpg", ".jpeg"}:
            return None
        target = self.docs / "results" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(source, target)
        return f"results/{source.name}"

    def category_forest(self, iri: str) -> str:
        """The forest plot of the results of every technique below a category (empty if none)."""
        m, found, todo = self.m, set(), list(self.m.concepts[iri].children)
        while todo:
            child = todo.pop()
            if child not in found and child in m.concepts:
                found.add(child)
                todo.extend(m.concepts[child].children)
        results = [m.results[r] for c in sorted(found) for r in m.concepts[c].results]
        return forest_svg(results, m.labels)

    def regime_of(self, iri: str) -> dict | None:
        """The technique's regime curve with its two SVG charts and summary (None if unmeasured)."""
        curve = self.m.regimes.get(iri)
        if curve is None:
            return None
        return {"curve": curve, "summary": curve_summary(curve),
                "svgs": {axis: curve_svg([curve], axis, self.m.labels) for axis in ("labelled fraction", "student size")}}

    def copy_forest(self, results: list[Result]) -> str | None:
        """The forest plot of every claim (results/forest.png, beside the results' own plots)."""
        for result in results:
            if result.plot:
                source = (self.root / result.plot).resolve().parent / "forest.png"
                if source.is_file():
                    target = self.docs / "results" / source.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    return f"results/{source.name}"
        return None

    def describe(self, iri: str) -> list[ox.Triple]:
        query = f"""CONSTRUCT {{ <{iri}> ?p ?o . ?b ?p2 ?o2 }} WHERE {{
            {{ <{iri}> ?p ?o }} UNION
            {{ <{iri}> ?q ?start . FILTER(isBlank(?start))
               ?start (<urn:x:any>|!<urn:x:any>)* ?b . FILTER(isBlank(?b)) ?b ?p2 ?o2 }} }}"""
        return sorted(set(self.base.query(query)), key=str)

    def write_rdf(self, iri: str, folder: str) -> dict[str, str]:
        """The resource's own description in every format, next to its page; ext -> docs path."""
        triples = self.describe(iri)
        out = {}
        for ext, (_, fmt, _) in RDF_FORMATS.items():
            path = f"{folder}/{local(iri)}/{local(iri)}.{ext}"
            target = self.docs / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(serialize_rdf(triples, fmt) or b"")
            out[ext] = path
        return out

    # ------------------------------------------------------------ cookbook
    def load_queries(self) -> list[Query]:
        queries = []
        for file in sorted(self.queries_dir.glob("*.rq")):
            lines = file.read_text(encoding="utf-8").splitlines()
            header = []
            while lines and lines[0].startswith("#"):
                header.append(lines.pop(0).lstrip("#").strip())
            title = header[0] if header else file.stem
            description = " ".join(h for h in header[1:] if h)
            key = re.sub(r"^\d+[-_]", "", file.stem)
            queries.append(Query(key, title, description, "\n".join(lines).strip(), file.name))
        return queries

    def run_query(self, q: Query, limit: int = 25) -> None:
        result = self.base.query(q.text)
        used = sorted({p for p in PREFIXES if re.search(rf"(?<![\w<]){re.escape(p)}:", q.text)})
        prologue = "".join(f"PREFIX {p}: <{PREFIXES[p]}>\n" for p in used)
        q.editor_url = "/sparql?q=" + quote(prologue + "\n" + q.text, safe="")
        if isinstance(result, ox.QueryBoolean):
            q.kind, q.boolean = "ask", bool(result)
            return
        if isinstance(result, ox.QuerySolutions):
            q.kind = "select"
            q.columns = [v.value for v in result.variables]
            rows = [[sol[c] for c in q.columns] for sol in result]
        else:
            q.kind = "construct"
            q.columns = ["subject", "predicate", "object"]
            rows = [[t.subject, t.predicate, t.object] for t in result]
        q.total = len(rows)
        q.rows = [[self._cell(term) for term in row] for row in rows[:limit]]

    def _cell(self, term) -> tuple[str, str | None]:
        if term is None:
            return ("", None)
        if isinstance(term, ox.NamedNode):
            return (compact(term.value), term.value if self.path_of(term.value) else None)
        if isinstance(term, ox.BlankNode):
            return (f"_:{term.value[:8]}", None)
        value = term.value
        return (value if len(value) <= 180 else value[:177] + "…", None)

    # ------------------------------------------------------------ the whole site
    def write_all(self) -> None:
        m = self.m
        self.docs.mkdir(parents=True, exist_ok=True)
        results = list(m.results.values())
        plots = {r.iri: self.copy_plot(r) for r in results}
        forest = self.copy_forest(results)
        queries = self.load_queries()
        for q in queries:
            self.run_query(q)

        self.render("home.md.j2", "index.md", results=results, queries=queries[:3])
        overview = self.mermaid_overview()
        diagrams = {a.iri: self.mermaid_tree(set(a.members), direction="LR") for a in m.axes.values()}
        self.render("taxonomy.md.j2", "taxonomy/index.md", overview=overview)
        for axis in m.axes.values():
            self.render("axis.md.j2", f"taxonomy/{axis.name}.md", axis=axis, diagram=diagrams[axis.iri])
        self.render("concepts.md.j2", "concepts/index.md")
        procedures = self.procedures()  # every technique module parsed once, for its page and the use page
        procedure_of = {p["iri"]: p["info"] for p in procedures}
        for c in m.concepts.values():
            rdf = self.write_rdf(c.iri, "concepts")
            impls = [(m.implementations[i], self.source_of(i)) for i in c.implementations if i in m.implementations]
            self.render("concept.md.j2", f"concepts/{c.name}.md", c=c, rdf=rdf, RDF_FORMATS=RDF_FORMATS,
                        diagram=self.neighbourhood(c.iri), implementations=impls,
                        results=[m.results[r] for r in c.results], plots=plots,
                        category_forest=self.category_forest(c.iri), regime=self.regime_of(c.iri),
                        procedures=procedure_of)
        self.render("papers.md.j2", "papers/index.md")
        for p in m.papers.values():
            rdf = self.write_rdf(p.iri, "papers")
            self.render("paper.md.j2", f"papers/{p.key}.md", p=p, rdf=rdf, RDF_FORMATS=RDF_FORMATS)
        self.render("results.md.j2", "results/index.md", results=results, plots=plots, forest=forest,
                    forest_svg=forest_svg(results, m.labels))
        curves = sorted(m.regimes.values(), key=lambda c: m.label(c.technique).lower())
        self.render("regimes.md.j2", "regimes/index.md", curves=curves,
                    svgs={axis: curve_svg(curves, axis, m.labels) for axis in ("labelled fraction", "student size")},
                    summaries={c.iri: curve_summary(c) for c in curves})
        self.render("cookbook.md.j2", "cookbook/index.md", queries=queries)
        self.render("facts.md.j2", "facts/index.md")
        self.render("sources.md.j2", "sources/index.md")
        self.render("implementations.md.j2", "implementations/index.md",
                    sources={i: self.source_of(i) for i in m.implementations})
        self.render("downloads.md.j2", "downloads/index.md", files=self.copy_downloads())
        self.render("use.md.j2", "use/index.md", procedures=procedures, examples=self.examples())

    def procedures(self) -> list[dict]:
        """Each implemented technique's `distill` settings, read from its module's PROCEDURE."""
        found = []
        for impl in sorted(self.m.implementations.values(), key=lambda i: i.name):
            try:
                info = codemod.read_procedure(self.root, impl.module)
            except (OSError, SyntaxError, ValueError):
                info = None
            if info is not None:
                found.append({"name": impl.name, "iri": impl.iri, "concept": impl.technique, "info": info})
        return found

    def examples(self) -> list[dict]:
        """examples/*.py with their first docstring paragraph and, when measured, their run."""
        folder = self.root / "examples"
        times_file = self.root / "results" / EXAMPLE_TIMES
        measured = json.loads(times_file.read_text(encoding="utf-8")) if times_file.is_file() else {}
        found = []
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            code = path.read_text(encoding="utf-8")
            doc = ast.get_docstring(ast.parse(code)) or ""
            relative = f"examples/{path.name}"
            found.append({"path": relative, "code": code.rstrip(), "summary": doc.split("\n\n")[0].replace("\n", " "),
                          "measured": measured.get(relative)})
        return found

    def copy_downloads(self) -> dict[str, list[dict]]:
        """The whole knowledge base in every serialization, and the Turtle files it is built from."""
        target = self.docs / "downloads"
        target.mkdir(parents=True, exist_ok=True)
        exports = self.base.build_dir / "exports"
        whole = []
        for ext, label in EXPORT_LABELS.items():
            src = exports / f"kdkb.{ext}"
            if not src.exists():  # a store built with --no-export: serialize it now
                from ..build import write_exports
                write_exports(self.base.store, exports)
            shutil.copyfile(src, target / src.name)
            whole.append({"name": src.name, "label": label, "bytes": src.stat().st_size,
                          "server": f"/ontology.{ext}"})
        sources = []
        manifest = self.base.manifest
        for f in manifest.get("files", []):
            path = Path(f["path"])
            path = path if path.is_absolute() else self.root / path
            if path.is_file():
                rel = f["path"] if not Path(f["path"]).is_absolute() else path.name
                dest = target / "source" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                sources.append({"name": rel, "graph": f["graph"], "triples": f["triples"],
                                "path": f"downloads/source/{rel}"})
        return {"whole": whole, "sources": sources,
                "triples": [{"count": manifest.get("triples"), "build": manifest.get("id"),
                             "built_at": manifest.get("built_at"), "commit": manifest.get("git_commit")}]}


__all__ = ["SiteWriter", "md"]
