"""The site in a real browser: headless Chromium (Debian's `chromium`, which `make test`
installs) against `kd serve`. No console errors, no request leaves 127.0.0.1, the math and
the diagrams render, search finds a technique; a screenshot of a technique page is kept in
test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .server_harness import running_server
from .site_fixture import REPO, build_once

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]

# mkdocs-material draws each diagram into a closed shadow root; opening it lets the test see the SVG.
OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { return attach.call(this, { ...init, mode: "open" }); };
"""


@pytest.fixture(scope="module")
def url(built, paths, tmp_path_factory):
    site = build_once(paths.data_dir, tmp_path_factory.mktemp("site"))
    with running_server(paths.data_dir, KD_WORKERS="1", KD_SITE_DIR=str(site.html)) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package "
                    "(apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


class Visit:
    """A browser page that records console errors and every request that is not to 127.0.0.1
    (and refuses it)."""

    def __init__(self, browser, base: str):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                           service_workers="block")
        self.context.add_init_script(OPEN_SHADOW_ROOTS)
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", self._seen)
        self.base = base

    def _is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1"

    def _seen(self, request) -> None:
        if not self._is_local(request.url):
            self.outside.append(request.url)

    def _route(self, route) -> None:
        if self._is_local(route.request.url):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def goto(self, path: str):
        response = self.page.goto(self.base + path, wait_until="networkidle")
        assert response is not None and response.status == 200, path
        return self.page

    def close(self) -> None:
        self.context.close()
        assert not self.outside, f"requests left 127.0.0.1: {self.outside}"
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture
def visit(browser, url):
    v = Visit(browser, url)
    yield v
    v.close()  # asserts: no console error, nothing fetched from another host


def wait_for_diagrams(page) -> list[dict]:
    page.wait_for_function("() => document.querySelectorAll('pre.mermaid').length === 0 && "
                           "[...document.querySelectorAll('div.mermaid')].every(d => d.shadowRoot && "
                           "d.shadowRoot.querySelector('svg'))", timeout=20000)
    return page.evaluate("""() => [...document.querySelectorAll('div.mermaid')].map(d => ({
        nodes: d.shadowRoot.querySelectorAll('g.node').length,
        error: /syntax error/i.test(d.shadowRoot.textContent),
        height: d.getBoundingClientRect().height }))""")


def test_home_page(visit):
    page = visit.goto("/")
    assert "Knowledge-distillation knowledge base" in page.title()
    assert page.locator("h1").first.inner_text().startswith("Knowledge-distillation knowledge base")
    for tab in ("Taxonomy", "Concepts", "Papers", "Results", "SPARQL cookbook"):
        assert page.locator(".md-tabs__link", has_text=tab).count() == 1


def test_technique_page_renders_math_and_diagram(visit):
    page = visit.goto("/concepts/SoftTargetDistillation/")
    page.wait_for_selector(".katex", timeout=10000)
    assert page.locator(".katex-display").count() >= 1  # the objective
    assert page.locator(".katex-error").count() == 0
    diagrams = wait_for_diagrams(page)
    assert diagrams and all(d["nodes"] >= 2 and not d["error"] and d["height"] > 50 for d in diagrams), diagrams
    assert page.locator(".kd-literate .highlight").count() >= 3  # code beside its explanation
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "technique-page.png"), full_page=False)
    page.locator("#the-code-reference_impltechniquessoft_targetspy, h3:has-text('The code')").first \
        .scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "technique-page-code.png"), full_page=False)


def test_taxonomy_diagrams_render(visit):
    page = visit.goto("/taxonomy/KnowledgeAxis/")
    diagrams = wait_for_diagrams(page)
    assert diagrams and diagrams[0]["nodes"] >= 10 and not diagrams[0]["error"]


def test_cookbook_and_its_editor_links(visit):
    page = visit.goto("/cookbook/")
    links = page.locator("a.md-button", has_text="Open in the query editor")
    assert links.count() >= 12
    assert page.locator("article table").count() >= 10
    href = links.nth(1).get_attribute("href")
    editor = visit.goto(href)
    editor.wait_for_selector(".CodeMirror", timeout=15000)
    text = editor.evaluate("() => document.querySelector('.CodeMirror').CodeMirror.getValue()")
    assert "kd:RelationBasedDistillation" in text and "PREFIX kd:" in text


def test_search_finds_a_technique_by_name(visit):
    page = visit.goto("/")
    box = page.locator("input.md-search__input")
    box.click()
    box.press_sequentially("mutual learning", delay=20)
    hit = page.locator(".md-search-result__item a[href*='concepts/DeepMutualLearning/']").first
    hit.wait_for(timeout=20000)
    assert "mutual" in page.locator(".md-search-result").inner_text().lower()


def test_server_routes_win_over_the_site(url):
    with httpx.Client(base_url=url, timeout=10) as client:
        assert "YASGUI" in client.get("/sparql", headers={"Accept": BROWSER_ACCEPT}).text or \
            "yasgui" in client.get("/sparql", headers={"Accept": BROWSER_ACCEPT}).text
        assert client.get("/api/openapi.json").json()["paths"]
        r = client.get("/id/DeepMutualLearning", headers={"Accept": BROWSER_ACCEPT})
        assert r.status_code == 303 and r.headers["location"] == "/concepts/DeepMutualLearning/"
        assert "Deep mutual learning" in client.get(r.headers["location"]).text
        r = client.get("/ontology", headers={"Accept": BROWSER_ACCEPT})
        assert r.status_code == 303 and client.get(r.headers["location"]).status_code == 200
        for kind, sample in (("fact", "kd-limited-theory"), ("source", "seed-4ort")):
            r = client.get(f"/{kind}/{sample}", headers={"Accept": BROWSER_ACCEPT})
            assert r.status_code == 303, kind
            page = client.get(r.headers["location"].split("#")[0]).text
            assert f'id="{r.headers["location"].split("#")[1]}"' in page
        assert client.get("/no/such/page/").status_code == 404


def test_api_docs_work_offline(visit):
    """Swagger UI from the project's own static files: the page renders the API's operations
    and fetches nothing from another host (the Visit refuses and records any such request)."""
    page = visit.goto("/api/docs")
    page.wait_for_selector(".opblock", timeout=20000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/concepts" in operations and "/api/results" in operations


def test_sparql_editor_and_its_example_tabs(visit):
    page = visit.goto("/sparql")
    page.wait_for_selector(".CodeMirror", timeout=15000)
    values = "() => [...document.querySelectorAll('.CodeMirror')].map(e => e.CodeMirror.getValue()).join(' ')"
    assert "RelationBasedDistillation" in page.evaluate(values)
    page.locator(".tab", has_text="Techniques of the online scheme").first.click()
    page.wait_for_function(f"() => ({values})().includes('OnlineDistillation')", timeout=15000)
