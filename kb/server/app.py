"""The application: a thin composition of the SPARQL, Linked Data and JSON API routers,
the static site at `/`, and two small ASGI layers every request passes through."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from . import routes_api, routes_ld, routes_sparql
from .service import Service
from .settings import Settings

STATIC = Path(__file__).resolve().parent / "static"

PLACEHOLDER_HOME = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Knowledge-distillation knowledge base</title></head><body>
<h1>Knowledge-distillation knowledge base</h1>
<p>The documentation site has not been built yet (<code>kd site build</code>).</p>
<ul><li><a href="/sparql">SPARQL query editor</a></li><li><a href="/api/docs">JSON API</a></li>
<li><a href="/ontology.ttl">The ontology (Turtle)</a></li></ul></body></html>"""


class PublicAddress:
    """Every URL the server writes (redirects, the service description) names the configured
    public address: the request's own Host header is replaced before any route sees it."""

    def __init__(self, app, base_url: str):
        self.app = app
        parts = urlsplit(base_url)
        self.scheme, self.host = parts.scheme, parts.netloc.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"] + [(b"host", self.host)]
            scope = {**scope, "headers": headers, "scheme": self.scheme}
        await self.app(scope, receive, send)


class HeadAsGet:
    """HEAD works wherever GET does: the GET response's headers, without its body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = Service(settings)
        try:
            yield
        finally:
            app.state.service.close()

    app = FastAPI(
        title="Knowledge-distillation knowledge base",
        description="SPARQL 1.1 endpoint, Linked Data and a JSON API over the knowledge-distillation ontology.",
        version="0.1.0", lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
    )

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        # Swagger UI from the project's own static files (npm, at install): nothing from a CDN.
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json", title="Knowledge-distillation knowledge base: JSON API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})

    # Cross-origin reads only: nothing that writes is reachable from another origin
    # (updates need an Authorization header, which no CORS preflight is allowed for).
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"],
                       allow_headers=[], allow_credentials=False)
    app.add_middleware(HeadAsGet)
    app.add_middleware(PublicAddress, base_url=settings.base_url)
    app.include_router(routes_sparql.router)
    app.include_router(routes_api.router)
    app.include_router(routes_ld.router)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if (settings.site_dir / "index.html").exists():
        app.mount("/", StaticFiles(directory=settings.site_dir, html=True), name="site")
    else:
        @app.get("/", include_in_schema=False)
        async def home() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER_HOME)
    return app
