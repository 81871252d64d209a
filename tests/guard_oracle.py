"""The engine itself as the oracle for `kb.guard`, and a generator of hostile requests.

The oracle runs a request through pyoxigraph with no guard and no sandbox, in this
process, against a two-triple store, while a loopback listener plays every remote endpoint
and document: if the engine reads SERVICE or LOAD it connects (or, for `SERVICE ?unbound`,
says that it tried). The generated requests are built so that a SERVICE the engine parses
is also reached during evaluation (variables only in the patterns it is joined with), then
mutated character by character with the characters that change how SPARQL is tokenized.

rdflib's parser is no oracle here: it strips comments before parsing (so `ex:\\#` starts a
comment for it), decodes `\\u` escapes that pyoxigraph does not, and never splits a keyword
glued to a name as pyoxigraph's parser does.
"""

from __future__ import annotations

import random
import re
import socket
import threading
from dataclasses import dataclass

import pyoxigraph as ox

EX = "http://example.org/"
XSD_BOOLEAN = "http://www.w3.org/2001/XMLSchema#boolean"


class Listener:
    """A loopback HTTP server that answers every request with an empty result and counts them."""

    RESULTS = b'{"head":{"vars":[]},"results":{"bindings":[]}}'
    DOCUMENT = b"<http://example.org/d> <http://example.org/p> 1 .\n"

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            try:
                conn.settimeout(2)
                request = conn.recv(65536)
                if b"sparql-results" in request or b"query=" in request:
                    body, ctype = self.RESULTS, b"application/sparql-results+json"
                else:
                    body, ctype = self.DOCUMENT, b"application/n-triples"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


# An evaluation error that shows the engine tried to reach another host.
# (The store is in memory: an OSError during evaluation can only come from the network.)
_TRIED = re.compile(r"service name|media type|not allowed for http", re.I)


@dataclass
class Outcome:
    parsed: bool  # the engine accepted the text
    tried: bool  # the engine connected, or said that it tried to
    result: object  # the answer, comparable between two runs
    error: str = ""


def engine(text: str, *, update: bool, listener: Listener, prefixes: dict[str, str] | None = None) -> Outcome:
    """Run `text` on a fresh two-triple store with no guard and no sandbox."""
    store = ox.Store()
    s, p = ox.NamedNode(EX + "s"), ox.NamedNode(EX + "p")
    store.add(ox.Quad(s, p, ox.Literal("o")))
    store.add(ox.Quad(s, p, ox.Literal("o"), ox.NamedNode(EX + "g")))  # so joins never empty
    store.add(ox.Quad(s, p, ox.Literal("true", datatype=ox.NamedNode(XSD_BOOLEAN))))  # `?s ?p true`
    before = listener.count
    try:
        if update:
            store.update(text, prefixes=prefixes)
            result: object = sorted(str(q) for q in store)
        else:
            answer = store.query(text, prefixes=prefixes)
            if isinstance(answer, ox.QueryBoolean):
                result = bool(answer)
            elif isinstance(answer, ox.QuerySolutions):
                names = [v.value for v in answer.variables]
                result = sorted(tuple(str(row[n]) for n in names) for row in answer)
            else:
                result = sorted(str(t) for t in answer)
    except SyntaxError as exc:
        return Outcome(False, listener.count > before, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - any evaluation error is an outcome to compare
        message = f"{type(exc).__name__}: {exc}"
        tried = isinstance(exc, OSError) or bool(_TRIED.search(str(exc)))
        return Outcome(True, listener.count > before or tried, None, message)
    return Outcome(True, listener.count > before, result)


# -- generation ---------------------------------------------------------------------------
HAZARDS = ["#", "\\", '"', "'", "<", ">", "{", "}", "(", ")", "\n", ":", ".", "%23", "\\#", " ",
           "?", "$", "_:", "@en", "^^", "\\u0022", "\\u0053", "SERVICE", "LOAD", "service", "true",
           "a", "!", "|", ",", ";", "'''", '"""', "<<", ">>", "<<(", ")>>", "\\.", "-", "0",
           "e", "\r", "\t", "svc:", ":", "&&", "=", "*", "+", "~", "`", "true", "<=", "1"]
# (No SILENT: a SERVICE SILENT or LOAD SILENT whose IRI a mutation broke fails silently, so
# the oracle could not see that the engine read it.)


class Generator:
    """Requests that reach another host if the engine reads SERVICE or LOAD, and decoys."""

    def __init__(self, port: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.remote = f"http://127.0.0.1:{port}/"
        self.n = 0

    def pick(self, options):
        return self.rng.choice(options)

    def var(self) -> str:
        self.n += 1
        return f"?v{self.n}"

    def prologue(self) -> str:
        r = self.remote
        declarations = [f"PREFIX svc: <{r}>", f"PREFIX ex: <{EX}>", f"PREFIX SERVICE: <{r}>",
                        f"PREFIX service: <{r}>", f"PREFIX LOAD: <{r}>", f"PREFIX : <{r}>",
                        f"PREFIX true: <{r}>", f"PREFIX a: <{r}>", f"PREFIX SERVICEsvc: <{EX}>",
                        f"BASE <{r}>", f"prefix ex.x-y: <{EX}>", "PREFIX e\u00e9: <http://example.org/>"]
        chosen = self.rng.sample(declarations, self.rng.randint(1, 5))
        if "PREFIX svc:" not in " ".join(chosen):
            chosen.append(f"PREFIX svc: <{r}>")
        if "PREFIX ex:" not in " ".join(chosen):
            chosen.append(f"PREFIX ex: <{EX}>")
        self.rng.shuffle(chosen)
        return self.pick([" ", "\n"]).join(chosen)

    def service_name(self) -> str:
        r = self.remote
        return self.pick([f"<{r}sparql>", f"<{r}\\u0073parql>", "svc:sparql", "svc:\\#q", "svc:a%23b",
                          ":sparql", "SERVICE:x", "<sparql>", "svc:a.b", f"<{r}q#frag>"])

    def service(self) -> str:
        keyword = self.pick(["SERVICE", "service", "SeRvIcE", "SERVICE SILENT", "SERVICE\n",
                             "SERVICE#c\n", "SERVICE\t", "SERVICE"])
        name = self.service_name()
        glue = "" if self.rng.random() < 0.2 and name[0] not in "<" else " "
        body = self.pick(["{ ?s ?p ?o }", "{}", "{ ?a ?b ?c }", "{?x ?y ?z}"])
        return f"{keyword}{glue}{name} {body}"

    def decoy(self) -> str:
        v = self.var()
        return self.pick([
            f'BIND("SERVICE <x> {{}}" AS {v})', f"BIND('''it's \"SERVICE\"''' AS {v})",
            f"BIND(ex:SERVICE AS {v})", f"BIND(ex:\\#SERVICE AS {v})", f"BIND(ex:a%23SERVICE AS {v})",
            f"BIND(<{EX}SERVICE#x> AS {v})", "# SERVICE <http://x/> {}\n", f'BIND("x"@en AS {v})',
            "?service ?p ?o .", "_:SERVICE ?p ?o .", f'BIND("\\"" AS {v})', f'BIND("\\u0022" AS {v})',
            f"BIND(ex:\\# AS {v})", f"BIND(\"LOAD\" AS {v})", f"BIND(ex:load AS {v})",
            # Filters hold even with unbound variables, so that nothing after them goes unevaluated.
            "FILTER(?s<?o || ?o>?s || true)", "FILTER(?s<ex:b || true)", "FILTER(1<2)",
            "FILTER(?o <= ?o || true)", "FILTER(EXISTS { ?s ?p ?o }<ex:b || true)",
            "FILTER(NOT EXISTS {}<1 || true)", "FILTER(?o IN (<http://example.org/x>, \"o\"))",
            f"OPTIONAL {{ ?s ?p (?a <{EX}SERVICE>) }}", "OPTIONAL { ?s ex:p|ex:q ?o2 }",
            f"BIND(<<( ex:s ex:p \"SERVICE\" )>> AS {v})", "FILTER(?s != <x> || true)",
            f'BIND(CONCAT("a", "b") AS {v})', f"BIND(1.5e3 AS {v})", f"VALUES {v} {{ 1 }}",
            "FILTER(regex(str(?o), \"o|SERVICE\") || true)", f"BIND(ex:a.b AS {v})",
        ])

    def element(self, depth: int = 0) -> str:
        roll = self.rng.random()
        if roll < 0.25:
            return self.service()
        if roll < 0.55 or depth > 1:
            return self.decoy()
        inner = self.element(depth + 1)
        return self.pick([
            f"OPTIONAL {{ {inner} }}", f"{{ {inner} }} UNION {{ ?s ?p ?o }}", f"GRAPH ?g {{ ?s ?p ?o {inner} }}",
            f"FILTER EXISTS {{ {inner} }}", f"{{ SELECT * WHERE {{ {inner} }} }}", f"{{ {inner} }}",
        ])

    def query(self) -> str:
        parts = [self.element() for _ in range(self.rng.randint(1, 4))]
        head, tail = self.pick([
            ("SELECT *", ""), ("select *", "LIMIT 5"), ("ASK", ""), ("SELECT DISTINCT *", "ORDER BY ?o"),
            ("CONSTRUCT { ?s ?p ?o }", ""), ("SELECT (COUNT(*) AS ?n)", ""),
            ("SELECT ?s (?o<?o AS ?lt) (STR(?s) AS ?str)", "ORDER BY DESC(?o) ?s"),
            ("SELECT ?s (COUNT(?o) AS ?n)", "GROUP BY ?s HAVING(COUNT(?o) < 10) ORDER BY ex:f(?s) ?s"),
            ("SELECT *", f"VALUES ?s {{ <{EX}s> }}"), ("DESCRIBE ?s", ""),
        ])
        where = self.pick(["WHERE ", "where ", ""])
        sep = self.pick([" ", "\n", " . ", "\n\t"])
        return f"{self.prologue()}\n{head} {where}{{ ?s ?p ?o {sep.join(parts)} }} {tail}"

    def update(self) -> str:
        r = self.remote
        load = self.pick([f"LOAD <{r}doc>", f"LOAD SILENT <{r}doc>", f"load svc:doc INTO GRAPH <{EX}g2>",
                          "LOADsvc:doc", f"LOAD <{r}\\u0064oc>", "LOAD :doc", "LOAD#x\n<doc>"])
        operations = [
            load, f"INSERT DATA {{ <{EX}a> <{EX}b> \"LOAD\" }}",
            f"DELETE {{ <{EX}a> <{EX}b> ?o }} WHERE {{ ?s ?p ?o {self.element()} }}",
            f"INSERT {{ <{EX}a> <{EX}b> ?o }} WHERE {{ ?s ?p ?o {self.element()} }}",
            f"INSERT DATA {{ <{EX}a> <{EX}load> 1 }}", f"CREATE SILENT GRAPH <{EX}new>",
        ]
        chosen = self.rng.sample(operations, self.rng.randint(1, 3))
        # Operations that empty the store go last, so that every earlier WHERE has solutions.
        if self.rng.random() < 0.3:
            chosen.append(self.pick([f"CLEAR SILENT GRAPH <{EX}g>", "# LOAD <http://x/>\nCLEAR SILENT DEFAULT",
                                     "DROP SILENT ALL"]))
        return f"{self.prologue()}\n" + self.pick([" ;\n", ";", " ; "]).join(chosen)

    def mutate(self, text: str) -> str:
        for _ in range(self.rng.randint(1, 3)):
            at = self.rng.randrange(len(text) + 1)
            roll = self.rng.random()
            if roll < 0.55:
                text = text[:at] + self.pick(HAZARDS) + text[at:]
            elif roll < 0.75 and text:
                span = self.rng.randint(1, 3)
                text = text[:at] + text[at + span:]
            elif roll < 0.85:
                span = self.rng.randint(1, 12)
                text = text[:at] + text[at:at + span].swapcase() + text[at + span:]
            else:
                spaces = [m.start() for m in re.finditer(r"\s", text)]
                if spaces:
                    at = self.pick(spaces)
                    text = text[:at] + text[at + 1:]
        return text

    def cases(self, count: int):
        """(text, is_update) pairs: a third as generated, the rest mutated."""
        for i in range(count):
            update = self.rng.random() < 0.25
            text = self.update() if update else self.query()
            if i % 3:
                text = self.mutate(text)
            yield text, update



# -- crafted bypass attempts ---------------------------------------------------------------
# Each is a way a reader that tokenizes SPARQL differently from the engine could miss a
# SERVICE or LOAD. Given raw to the engine, every one of them contacts the listener (the
# tests check this, so that each attempt is a live one); the guard must refuse them all.
_PROLOGUE = ("PREFIX ex: <http://example.org/> PREFIX svc: <{r}> PREFIX : <{r}> "
             "PREFIX xsd: <http://www.w3.org/2001/XMLSchema#> ")
# Operands after which `<` is less-than, not the start of an IRI.
_OPERANDS = ["?o", "1", "1.5", "1e3", ".5", '"s"', '"s"@en', '"s"^^ex:d', "ex:b",
             "<http://example.org/b>", "true", "false", "STR(?o)", "(?o)", "EXISTS{?s ?p ?o}",
             "NOT EXISTS{}", "<<( ?s ?p ?o )>>", "xsd:string(?o)", "$o", "NOW()", ":b", "ex:"]
# Expressions that never remove a solution (BIND), so that what follows them is evaluated:
# (opening, what closes the expression), with no space the "IRI" would have to contain.
_EXPRESSIONS = [("BIND(", "AS?v)"), ("BIND(COALESCE(", ")AS?v)"), ("BIND((", ")AS?v)"),
                ("BIND(STR(", ")AS?v)"), ("BIND(1+(", ")AS?v)"), ("BIND(xsd:string(", ")AS?v)"),
                ("BIND(?o IN(1,", ")AS?v)"), ("BIND(IF(", ",1,2)AS?v)"), ("BIND(!(", ")AS?v)")]
_HIDDEN = ["SERVICE?x#>\n", "SERVICE:x#>\n", "service?x#>\r\n"]
_STRINGS = [r'"\u0041"', r"'\u0027'", r'"\""', "'''a''''", '"""a"""" ', r'"a\\"', r"'\''",
            "'''it's'''", r'"\u0022 AS ?q) BIND(\u0022"']
_NAMES = [r"ex:\#", r"ex:a\#b", "ex:%23", r"ex:a\.b", r"ex:\##", "ex:a.b"]


def bypass_attempts(remote: str) -> list[tuple[str, bool]]:
    """(text, is_update) for every crafted attempt, each of which makes the raw engine connect."""
    r = remote
    pro = _PROLOGUE.format(r=r)
    body = "{ ?a ?b ?c }"
    bound = f"BIND(<{r}sparql> AS ?x) "
    where = f"{pro}SELECT * WHERE {{ ?s ?p ?o {bound}"
    attempts: list[tuple[str, bool]] = []
    # 1. A `<` read as the start of an IRI where the engine reads less-than: that "IRI" would
    #    hide the code up to a `#`, after which a reader sees a comment up to its `>`.
    for opening, closing in _EXPRESSIONS:
        for operand in _OPERANDS:
            for hidden in _HIDDEN:
                for operator in ("<", "<="):
                    attempts.append((f"{where}{opening}{operand}{operator}(1){closing}{hidden}{body} }}", False))
    attempts += [(f"{where}FILTER(0<(1)){hidden}{body} }}", False) for hidden in _HIDDEN]
    attempts.append((f"{pro}SELECT (?o<(1)AS?v) WHERE {{ ?s ?p ?o SERVICE <{r}sparql> {body} }}", False))
    # 2. Comments that are not comments, and names that end before a reader thinks they do.
    for name in _NAMES:
        attempts.append((f"{where}BIND({name} AS ?z) SERVICE <{r}sparql> {body}\n}}", False))
    attempts.append((f"{where}?s ?p ex:a.b.SERVICE <{r}sparql> {body} }}", False))
    # 3. Strings that end where a reader does not expect, or go on where it expects an end.
    for string in _STRINGS:
        attempts.append((f"{where}BIND({string} AS ?z) SERVICE <{r}sparql> {body} }}", False))
    # 4. Escapes in IRIs.
    attempts.append((f"{where}BIND(<http://example.org/\\u0041#> AS ?i) SERVICE <{r}sparql> {body} }}", False))
    attempts.append((f"{where}SERVICE <{r}\\u0073parql> {body} }}", False))
    # 5. Keywords the engine splits off a longer word or name.
    for glued in [f"SERVICEsvc:sparql {body}", f"SERVICE:sparql {body}", f"SERVICESILENT<{r}sparql>{body}",
                  f"?s ?p trueSERVICEsvc:sparql {body}", f"service<{r}sparql>{body}",
                  f"SERVICE svc:sparql{body}", f"SERVICE?x{body}"]:
        for declared in ("", f"PREFIX SERVICEsvc: <http://example.org/> PREFIX SERVICE: <{r}> "):
            attempts.append((declared + f"{where}{glued} }}", False))
    # 6. Case, whitespace and comments around the keyword; every place a group can be; every form.
    for keyword in ["service", "SeRvIcE", "SERVICE#x\n", "SERVICE\t", "SERVICE\r\n", "SERVICE SILENT",
                    "SERVICE\n#\n"]:
        attempts.append((f"{where}{keyword} <{r}sparql> {body} }}", False))
    for wrap in ["OPTIONAL {{ {} }}", "{{ {} }} UNION {{ ?s ?p ?o }}", "GRAPH ?g {{ ?s ?p ?o {} }}",
                 "MINUS {{ {} }}", "{{ SELECT * WHERE {{ {} }} }}", "FILTER EXISTS {{ {} }}",
                 "FILTER NOT EXISTS {{ {} }}", "OPTIONAL {{ {{ {{ {} }} }} }}"]:
        attempts.append((f"{where}{wrap.format(f'SERVICE <{r}sparql> {body}')} }}", False))
    for form in ["ASK", "CONSTRUCT { ?s ?p ?o } WHERE", "DESCRIBE ?s WHERE", "SELECT (COUNT(*) AS ?n) WHERE"]:
        attempts.append((f"{pro}{form} {{ ?s ?p ?o SERVICE <{r}sparql> {body} }}", False))
    # 7. LOAD, every way an update can say it, and SERVICE inside updates.
    for update in [f"LOAD <{r}doc>", f"load <{r}doc>", f"LOAD SILENT <{r}doc>", "LOAD svc:doc",
                   f"LOAD <{r}doc> INTO GRAPH <http://example.org/g>", "LOADsvc:doc", "LOAD:doc",
                   f'INSERT DATA {{ <http://example.org/a> <http://example.org/b> "x" }} ;LOAD<{r}doc>',
                   f"CLEAR SILENT GRAPH <http://example.org/none> ; LOAD <{r}doc>",
                   f"# comment\nLOAD#x\n<{r}doc>", f"LOAD <{r}\\u0064oc>",
                   f"INSERT {{ ?s ?p 1 }} WHERE {{ ?s ?p ?o SERVICE <{r}sparql> {body} }}",
                   f"DELETE {{ ?s ?p 2 }} WHERE {{ ?s ?p ?o SERVICE <{r}sparql> {body} }}",
                   f"WITH <http://example.org/g> INSERT {{ ?s ?p 1 }} WHERE {{ SERVICE <{r}sparql> {body} }}"]:
        attempts.append((pro + update, True))
    return attempts
