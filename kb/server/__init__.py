"""The HTTP face of the knowledge base: SPARQL 1.1 Protocol, Linked Data and a JSON API.

Queries run in the engine processes of `kb.engine` (spawned, so they import neither FastAPI
nor this package's routes). The application itself is in `kb.server.app`.
"""
