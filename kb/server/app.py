"""The application: a thin composition of the SPARQL, Linked Data and JSON API routers,
plus the static site at `/`."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
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
        docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json",
    )
    # Cross-origin reads only: nothing that writes is reachable from another origin
    # (updates need an Authorization header, which no CORS preflight is allowed for).
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"],
                       allow_headers=[], allow_credentials=False)
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
