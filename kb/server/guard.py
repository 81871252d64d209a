"""Refuse SPARQL that could reach outside the server, before anything runs it.

pyoxigraph executes `SERVICE <http://...>` by opening an HTTP connection, and an update's
`LOAD <...>` fetches a document. Neither may happen here: the endpoint must never make the
server contact another host or read a file. The check works on tokens, not on raw text, so
that the word inside a string, a comment, an IRI or a prefixed name (`schema:Service`) is
not mistaken for the keyword, and a keyword cannot hide from it in those places either:
IRIs cannot contain `{`, so no graph pattern can live inside one.

SPARQL allows `\\uXXXX` escapes outside strings; rather than decode them, a query that
uses one outside a string literal is refused.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r'''
      (?P<comment>\#[^\n\r]*)
    | (?P<string>"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'(?:[^'\\]|\\.|'(?!''))*\'\'\'
                 |"(?:[^"\\\n\r]|\\.)*"|'(?:[^'\\\n\r]|\\.)*')
    | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
    | (?P<var>[?$][A-Za-z0-9_\u00B7-\uFFFF]+)
    | (?P<pname>(?:[A-Za-z][\w\-.]*)?:[\w\-.:%\\]*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<escape>\\[uU])
    | (?P<space>\s+)
    | (?P<other>.)
    ''',
    re.X | re.S,
)

QUERY_FORMS = {"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"}
UPDATE_FORMS = {"INSERT", "DELETE", "LOAD", "CLEAR", "CREATE", "DROP", "COPY", "MOVE", "ADD", "WITH"}
# Keywords that make the engine fetch from elsewhere. Refused in queries and updates alike.
REMOTE_KEYWORDS = {"SERVICE": "SERVICE (federated query to another endpoint)",
                   "LOAD": "LOAD (fetching a document from an IRI)"}


class ForbiddenQuery(ValueError):
    """The query asks for something this server never does (e.g. contact another host)."""


def keywords(text: str) -> list[str]:
    """The bare words of a query, upper-cased, outside strings, IRIs, comments and names."""
    words = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "word":
            words.append(match.group().upper())
        elif kind == "escape":
            raise ForbiddenQuery(
                "codepoint escapes (\\u, \\U) are only accepted inside string literals here")
    return words


def check(text: str) -> str:
    """Raise ForbiddenQuery if the text could reach outside; return its form (SELECT, INSERT, ...)."""
    words = keywords(text)
    for word in words:
        if word in REMOTE_KEYWORDS:
            raise ForbiddenQuery(
                f"{REMOTE_KEYWORDS[word]} is not allowed: this endpoint never contacts other "
                "hosts or reads files")
    for word in words:
        if word in QUERY_FORMS or word in UPDATE_FORMS:
            return word
    return ""
