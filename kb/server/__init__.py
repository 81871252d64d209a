"""The HTTP face of the knowledge base: SPARQL 1.1 Protocol, Linked Data and a JSON API.

Kept import-light on purpose: query worker processes import `kb.server.worker` and
must not pull in FastAPI. The application itself is in `kb.server.app`.
"""
