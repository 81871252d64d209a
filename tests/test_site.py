"""The documentation site: generated from the store, complete, and with every link resolving."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pyoxigraph as ox
import pytest

import kb
from kb.config import Paths
from kb.namespaces import KD
from kb.server.routes_ld import KINDS, site_page

from .site_fixture import REPO, build_once


@pytest.fixture(scope="session")
def site(built, paths, tmp_path_factory):
    return build_once(paths.data_dir, tmp_path_factory.mktemp("site"))


def text_of(html: str) -> str:
    """The text of an HTML page, tags removed (highlighted code is split into many spans)."""
    import html as html_mod
    return html_mod.unescape(re.sub(r"<[^>]+>", "", html))


def local(iri: str) -> str:
    return iri.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------- a page for everything
def test_a_page_for_every_concept_and_paper(site, built):
    concepts = {local(r["c"]) for r in built.select("SELECT DISTINCT ?c WHERE { ?c a skos:Concept }")}
    papers = {local(r["p"]) for r in built.select(
        "SELECT DISTINCT ?p WHERE { ?p a ?t . ?t rdfs:subClassOf* bibo:Document }")}
    assert len(concepts) >= 80 and len(papers) >= 40
    for name in concepts:
        assert (site.html / "concepts" / name / "index.html").is_file(), f"no page for kd:{name}"
    for key in papers:
        assert (site.html / "papers" / key / "index.html").is_file(), f"no page for kdp:{key}"
    # ... and no page for anything that is not in the store
    assert {p.name for p in (site.html / "concepts").iterdir() if p.is_dir()} == concepts
    assert {p.name for p in (site.html / "papers").iterdir() if p.is_dir()} == papers
    assert site.report["concepts"] == len(concepts) and site.report["papers"] == len(papers)


def test_building_the_site_does_not_import_torch(site):
    assert site.report["torch_imported"] is False


def test_concept_page_shows_the_ontology(site, built):
    page = (site.html / "concepts" / "DeepMutualLearning" / "index.html").read_text()
    row = built.select("""SELECT ?label ?term ?def WHERE { kd:DeepMutualLearning skos:prefLabel ?label ;
                          kdo:termId ?term ; skos:definition ?def }""")[0]
    assert row["label"] in page and row["term"] in page
    assert row["def"][:60].replace("'", "&#39;") in page or row["def"][:60] in page
    for parent in ("OnlineDistillation", "ResponseBasedDistillation"):
        assert f'href="../{parent}/"' in page
    assert 'href="../../papers/zhang2018dml/"' in page and "https://arxiv.org/abs/1706.00384" in page
    assert 'class="arithmatex"' in page  # the objective
    assert 'class="mermaid"' in page  # its place in the taxonomy
    for ext in ("ttl", "nt", "jsonld", "rdf"):
        assert f'href="DeepMutualLearning.{ext}"' in page
    root = (site.html / "concepts" / "KnowledgeDistillation" / "index.html").read_text()
    assert "AI-0279" in root and 'href="http://www.wikidata.org/entity/Q74253442"' in root


def test_concept_rdf_beside_the_page(site):
    folder = site.html / "concepts" / "DeepMutualLearning"
    fmt = {"ttl": ox.RdfFormat.TURTLE, "nt": ox.RdfFormat.N_TRIPLES, "jsonld": ox.RdfFormat.JSON_LD,
           "rdf": ox.RdfFormat.RDF_XML}
    expected = ox.Triple(ox.NamedNode(KD + "DeepMutualLearning"),
                         ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#subClassOf"),
                         ox.NamedNode(KD + "OnlineDistillation"))
    for ext, f in fmt.items():
        triples = {ox.Triple(q.subject, q.predicate, q.object)
                   for q in ox.parse(path=str(folder / f"DeepMutualLearning.{ext}"), format=f)}
        assert expected in triples, ext


def test_technique_page_has_code_command_and_benchmark(site, built):
    impl = built.select("""SELECT ?t ?module WHERE { ?t a kdo:Technique ; kdo:implementedBy/kdo:pythonModule ?module }
                           ORDER BY ?t LIMIT 1""")[0]
    name, module = local(impl["t"]), impl["module"]
    page = (site.html / "concepts" / name / "index.html").read_text()
    source = (REPO / (module.replace(".", "/") + ".py")).read_text()
    first_def = re.search(r"^def (\w+)", source, re.M).group(1)
    assert f"kd run {module.rsplit('.', 1)[-1]}" in text_of(page)
    assert "kd-literate" in page and f'id="code-{first_def.replace("_", "-").strip("-")}"' in page
    assert first_def in page and "linenos" in page
    results = built.select(f"SELECT ?r ?verdict WHERE {{ ?r kdo:technique <{impl['t']}> ; kdo:verdict ?verdict }}")
    if not results:
        assert "Not benchmarked yet" in page
    for r in results:
        assert f'id="{local(r["r"])}"' in page
        wording = {"held": "The claim held on our data", "contradicted": "The claim did not hold on our data",
                   "no practical effect": "No practical effect on our data",
                   "inconclusive": "Inconclusive on our data"}[r["verdict"]]
        assert wording in page
        assert "mean ± sd" in page and "95% interval" in page and "p = " in page
    plots = built.select(f"SELECT DISTINCT ?plot WHERE {{ ?r kdo:technique <{impl['t']}> ; kdo:plot ?plot }}")
    for p in plots:
        assert (site.html / "results" / Path(p["plot"]).name).is_file()
        assert f'src="../../results/{Path(p["plot"]).name}"' in page


def test_unbenchmarked_technique_says_so(site, built):
    rows = built.select("""SELECT ?t WHERE { ?t a kdo:Technique FILTER NOT EXISTS { ?r kdo:technique ?t } }
                           ORDER BY ?t LIMIT 3""")
    assert rows
    for r in rows:
        page = (site.html / "concepts" / local(r["t"]) / "index.html").read_text()
        assert "Not benchmarked yet" in page


def test_paper_page_lists_what_it_introduced(site, built):
    page = (site.html / "papers" / "park2019" / "index.html").read_text()
    introduced = built.select("SELECT ?c WHERE { ?c kdo:introducedIn kdp:park2019 }")
    assert introduced
    for r in introduced:
        assert f'href="../../concepts/{local(r["c"])}/"' in page
    assert "https://arxiv.org/abs/1904.05068" in page


def test_taxonomy_has_a_diagram_on_every_axis(site, built):
    axes = [local(r["a"]) for r in built.select("SELECT ?a WHERE { ?a a kdo:Axis }")]
    assert len(axes) == 5
    index = (site.html / "taxonomy" / "index.html").read_text()
    assert index.count('class="mermaid"') >= 1
    for axis in axes:
        page = (site.html / "taxonomy" / axis / "index.html").read_text()
        assert '<pre class="mermaid"><code>flowchart' in page, axis
        assert f'id="{axis}"' in index and f'href="{axis}/"' in index
    knowledge = (site.html / "taxonomy" / "KnowledgeAxis" / "index.html").read_text()
    assert "RelationalKD" in knowledge and "FitNets" in knowledge


def test_cookbook_has_a_dozen_queries_with_results_and_editor_links(site, built):
    page = (site.html / "cookbook" / "index.html").read_text()
    links = re.findall(r'href="(/sparql\?q=[^"]+)"', page)
    assert len(links) >= 12
    queries = sorted((REPO / "site" / "queries").glob("*.rq"))
    assert len(queries) == len(links)
    for link in links:
        text = unquote(link.split("q=", 1)[1])
        built.query(text, prefixes=False)  # parses and runs with only the prefixes it declares
    assert page.count("<table>") >= 10  # the answers, rendered at build time


def test_downloads_in_every_serialization(site, built):
    folder = site.html / "downloads"
    formats = {"ttl": ox.RdfFormat.TURTLE, "nt": ox.RdfFormat.N_TRIPLES, "nq": ox.RdfFormat.N_QUADS,
               "rdf": ox.RdfFormat.RDF_XML, "jsonld": ox.RdfFormat.JSON_LD}
    page = (folder / "index.html").read_text()
    for ext, fmt in formats.items():
        assert f'href="kdkb.{ext}"' in page and f'href="/ontology.{ext}"' in page
        triples = list(ox.parse(path=str(folder / f"kdkb.{ext}"), format=fmt))
        assert len(triples) > 1000, ext
    assert (folder / "source" / "ontology" / "core.ttl").is_file()


def test_ld_redirect_targets_exist(site, built):
    """Every kind of IRI the server redirects browsers for lands on a page (and anchor) that exists."""
    samples = {
        "id": "SELECT ?x WHERE { ?x a skos:Concept } LIMIT 3",
        "paper": "SELECT ?x WHERE { ?x a bibo:AcademicArticle } LIMIT 3",
        "source": "SELECT ?x WHERE { ?x a schema:WebPage } LIMIT 3",
        "fact": "SELECT ?x WHERE { ?x kdo:about ?c } LIMIT 3",
        "impl": "SELECT ?x WHERE { ?x a mls:Implementation } LIMIT 3",
        "result": "SELECT ?x WHERE { { ?x a kdo:BenchmarkResult } UNION { ?x a kdo:ArmResult } "
                  "UNION { ?x a mls:ModelEvaluation } UNION { ?x a prov:Activity } } LIMIT 6",
    }
    assert set(samples) == set(KINDS)
    checked = 0
    for kind, query in samples.items():
        for row in built.select(query):
            target = site_page(kind, local(row["x"]))
            path, _, anchor = target.partition("#")
            file = site.html / path.strip("/") / "index.html"
            assert file.is_file(), (kind, row["x"], target)
            if anchor:
                assert f'id="{anchor}"' in file.read_text(), (kind, row["x"], target)
            checked += 1
    assert checked >= 10
    assert (site.html / "downloads" / "index.html").is_file()  # /ontology redirects browsers there


# ---------------------------------------------------------------- links
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.refs.append((tag, key, a[key]))


def _crawl(html_dir: Path) -> dict[Path, _Links]:
    parsed = {}
    for file in html_dir.rglob("*.html"):
        p = _Links()
        p.feed(file.read_text(encoding="utf-8"))
        parsed[file] = p
    return parsed


SERVER_ROUTES = ("/sparql", "/api/", "/ontology", "/id/", "/paper/", "/static/")


def test_every_internal_link_and_anchor_resolves(site):
    pages = _crawl(site.html)
    assert len(pages) >= 130
    broken, checked = [], 0
    for file, links in pages.items():
        page_url = "/" + file.relative_to(site.html).as_posix()
        for tag, attr, url in links.refs:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "mailto", "data") or parts.netloc:
                continue
            if url.startswith("/") and url.startswith(SERVER_ROUTES):
                continue  # the server's own routes, beside the site (checked in test_site_browser)
            target_url = urljoin(page_url, parts.path) if parts.path else page_url
            target = site.html / unquote(target_url).lstrip("/")
            if target_url.endswith("/") or target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append((page_url, url, "no such file"))
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if unquote(parts.fragment) not in ids:
                    broken.append((page_url, url, "no such anchor"))
    assert checked > 5000
    assert not broken, f"{len(broken)} broken links, e.g. {broken[:10]}"


def test_nothing_is_loaded_from_another_host(site):
    """Scripts, styles, fonts, images: all local. (Links to papers and Wikidata are only links.)"""
    for file, links in _crawl(site.html).items():
        for tag, attr, url in links.refs:
            if tag in ("script", "img", "iframe") or (tag == "link" and attr == "href"):
                assert not urlsplit(url).netloc, f"{file}: {tag} {url}"
    css = "\n".join(p.read_text(errors="replace") for p in site.html.rglob("*.css"))
    assert "fonts.googleapis" not in css and "fonts.gstatic" not in css
    assert not re.search(r"url\((['\"]?)https?://", css)
    html = (site.html / "index.html").read_text()
    assert "fonts.googleapis" not in html and "assets/vendor/mermaid/mermaid.min.js" in html


def test_search_index_covers_the_concepts(site):
    import json
    index = json.loads((site.html / "search" / "search_index.json").read_text())
    locations = {d["location"] for d in index["docs"]}
    assert "concepts/DeepMutualLearning/" in locations and "papers/hinton2015/" in locations


# ---------------------------------------------------------------- results, held or not
RESULTS_TTL = """
@prefix kdo: <https://w3id.org/kdkb/ontology#> . @prefix kd: <https://w3id.org/kdkb/id/> .
@prefix kdi: <https://w3id.org/kdkb/impl/> . @prefix kdr: <https://w3id.org/kdkb/result/> .
@prefix prov: <http://www.w3.org/ns/prov#> . @prefix mls: <http://www.w3.org/ns/mls#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
# The shape reference_impl/harness/results.py writes, with made-up numbers.
kdr:soft_targets--up a kdo:BenchmarkResult , prov:Entity ; rdfs:label "An experiment that held" ;
  kdo:technique kd:SoftTargetDistillation ; kdo:implementation kdi:soft_targets ; kdo:experimentKey "up" ;
  kdo:claim "Distillation helps." ; kdo:claimSource "arXiv:1503.02531, section 3" ; kdo:dataset "digits" ;
  kdo:labelledFraction 1.0 ; kdo:teacherModel "CNN" ; kdo:studentModel "MLP 16" ; kdo:teacherAccuracy 0.98 ;
  kdo:teacherParameters 12000 ; kdo:studentEpochs 30 ; kdo:nSeeds 3 ; kdo:seeds "0 1 2" ;
  kdo:plot "results/no-such-plot.png" ; prov:wasGeneratedBy kdr:soft_targets--up--run ;
  kdo:treatmentArm kdr:soft_targets--up--distilled ; kdo:referenceArm kdr:soft_targets--up--baseline ;
  kdo:hasArm kdr:soft_targets--up--distilled , kdr:soft_targets--up--baseline ;
  kdo:meanDifference 0.031 ; kdo:sdDifference 0.004 ; kdo:ciLow 0.021 ; kdo:ciHigh 0.041 ; kdo:pValue 0.004 ;
  kdo:verdict "held" .
kdr:soft_targets--up--baseline a kdo:ArmResult ; kdo:armKey "baseline" ; rdfs:label "hard labels" ;
  kdo:meanAccuracy 0.901 ; kdo:sdAccuracy 0.01 ; kdo:meanECE 0.05 ; kdo:parameters 1200 ; kdo:trainSeconds 3.0 ;
  kdo:chosenEpochs "10 28 12" ;
  kdo:evaluation kdr:soft_targets--up--baseline--seed0 .
kdr:soft_targets--up--baseline--seed0 a mls:ModelEvaluation ; mls:hasValue 0.9 ; kdo:seed 0 .
kdr:soft_targets--up--distilled a kdo:ArmResult ; kdo:armKey "distilled" ; rdfs:label "soft targets" ;
  kdo:meanAccuracy 0.932 ; kdo:sdAccuracy 0.012 ; kdo:meanECE 0.04 ; kdo:parameters 1200 ; kdo:trainSeconds 3.5 ;
  kdo:chosenEpochs "28 30 20" .
kdr:soft_targets--up--run a prov:Activity , mls:Run ; kdo:gitCommit "abc123" ; kdo:torchVersion "2.13.0" ;
  kdo:pythonVersion "3.11" ; kdo:cpu "Test CPU" ; kdo:hardware "x86_64" ; dcterms:date "2026-01-01"^^xsd:date .
kdr:soft_targets--down a kdo:BenchmarkResult ; rdfs:label "An experiment that did not hold" ;
  kdo:technique kd:SoftTargetDistillation ; kdo:experimentKey "down" ; kdo:claim "Distillation helps a lot." ;
  kdo:claimSource "somewhere" ; kdo:dataset "digits" ; kdo:teacherAccuracy 0.98 ; kdo:nSeeds 3 ; kdo:seeds "0 1 2" ;
  kdo:treatmentArm kdr:soft_targets--down--distilled ; kdo:referenceArm kdr:soft_targets--down--baseline ;
  kdo:hasArm kdr:soft_targets--down--distilled , kdr:soft_targets--down--baseline ;
  kdo:meanDifference -0.052 ; kdo:ciLow -0.08 ; kdo:ciHigh -0.02 ; kdo:pValue 0.01 ; kdo:verdict "contradicted" .
kdr:soft_targets--down--baseline a kdo:ArmResult ; kdo:armKey "baseline" ; kdo:meanAccuracy 0.9 ; kdo:sdAccuracy 0.01 .
kdr:soft_targets--down--distilled a kdo:ArmResult ; kdo:armKey "distilled" ; kdo:meanAccuracy 0.848 ; kdo:sdAccuracy 0.02 .
"""


def test_results_held_and_not_held_are_stated_plainly(tmp_path):
    from kb.sitegen import generate

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "fake.ttl").write_text(RESULTS_TTL)
    paths = Paths.from_env(root=REPO, ontology_dir=REPO / "ontology", results_dir=tmp_path / "results",
                           data_dir=tmp_path / "data")
    kb.build(paths, export=False)
    generate(kb.open(paths.data_dir), tmp_path / "docs", REPO)
    page = (tmp_path / "docs" / "concepts" / "SoftTargetDistillation.md").read_text()
    down = page[page.index("{ #soft_targets--down }"):page.index("{ #soft_targets--up }")]
    up = page[page.index("{ #soft_targets--up }"):]
    assert "The claim held on our data" in up and "+3.1 points" in up and "[+2.1, +4.1]" in up
    assert "90.1 ± 1.0" in up and "93.2 ± 1.2" in up and "abc123" in up and "Test CPU" in up
    # 30-epoch budget: the distilled arm chose epochs 28 and 30 of 30 (> 27) on 2 of 3 seeds, the baseline 1 of 3
    assert "| budget | **bound** for distilled: validation chose one of the last 10% of the 30 epochs" in up
    assert "distilled: 28 30 20)" in up and "baseline:" not in up.split("| budget |")[1].split("\n")[0]
    assert "| budget |" not in down  # no chosen epochs recorded: nothing to flag
    assert "The claim did not hold on our data" in down and "**worse**" in down and "5.2 points" in down
    results = (tmp_path / "docs" / "results" / "index.md").read_text()
    assert "{ #soft_targets--up }" in results and "**contradicted**" in results
    home = (tmp_path / "docs" / "index.md").read_text()
    assert "**held**" in home and "**contradicted**" in home


# ---------------------------------------------------------------- the command
def test_site_build_command(tmp_path):
    from click.testing import CliRunner

    from kb.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["site", "--help"]).exit_code == 0
    result = runner.invoke(main, ["site", "build", "--help"])
    assert result.exit_code == 0 and "--out" in result.output
    result = runner.invoke(main, ["site", "build", "--data-dir", str(tmp_path / "nothing"),
                                  "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "kd build" in result.output
    assert not (tmp_path / "out").exists()


def test_use_it_on_your_own_model_page_lists_every_technique_and_the_examples(site, built):
    page = (site.docs / "use" / "index.md").read_text()
    modules = built.select("SELECT ?m WHERE { ?i kdo:pythonModule ?m }")
    from reference_impl import registry
    names = {m["m"].rsplit(".", 1)[-1] for m in modules if ".techniques." in m["m"]}
    names &= set(registry.technique_names(family="classification"))  # what distill runs
    assert names
    for name in names:  # one table row per technique, with its settings
        row = next(line for line in page.splitlines() if line.startswith("| [") and f"[{name.replace('_', '&#95;')}]" in line)
        assert row.count("|") == 5
    assert "`temperature` (4.0), `alpha` (0.9)" in page  # soft targets' settings, read from its PROCEDURE
    assert "[token&#95;level&#95;kd]" not in page and "language-model techniques" in page  # losses, not distill
    for example in sorted((REPO / "examples").glob("*.py")):
        assert f"### `examples/{example.name}`" in page
        assert "from reference_impl import distill" in (REPO / "examples" / example.name).read_text()
    assert (site.html / "use" / "index.html").is_file()
    nav = json.loads((site.out / "nav.json").read_text())
    assert {"Use it on your own model": "use/index.md"} in nav


def test_technique_page_shows_the_distill_call_with_its_settings(site):
    page = (site.docs / "concepts" / "SoftTargetDistillation.md").read_text()
    assert 'technique="soft_targets"' in page and "temperature=4.0" in page and "alpha=0.9" in page
    page = (site.docs / "concepts" / "RelationalKD.md").read_text()
    assert 'student_feature_layer="..."' in page
