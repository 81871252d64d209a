"""kb.guard: the engine's own tokens, keywords that cannot hide, and a differential test
against the engine itself (tests/guard_oracle.py)."""

from __future__ import annotations

import collections

import pyoxigraph as ox
import pytest

from kb.guard import (MAX_NESTING, ForbiddenQuery, GuardSyntaxError, QueryRefused, check, position,
                      tokenize)

from .guard_oracle import Generator, Listener, bypass_attempts, engine

EX = "PREFIX ex: <http://example.org/> "


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokenize(text) if t.kind != "SPACE"]


# -- the engine's behaviour the guard is built on (if pyoxigraph changes, revisit kb.guard) --
def test_engine_reads_keywords_without_a_word_boundary(listener):
    text = f"PREFIX ex: <http://127.0.0.1:{listener.port}/> SELECT * WHERE {{ SERVICEex:q {{ ?s ?p ?o }} }}"
    assert engine(text, update=False, listener=listener).tried


def test_engine_does_not_decode_codepoint_escapes_before_parsing():
    with pytest.raises(SyntaxError):
        ox.Store().query("SEL\\u0045CT * WHERE {}")
    # ... but inside a string an escape is a character, and the string goes on.
    rows = list(ox.Store().query('SELECT ?x WHERE { BIND("a\\u0022 b" AS ?x) }'))
    assert rows[0]["x"].value == 'a" b'


def test_engine_local_names_take_one_group_after_dots():
    store = ox.Store()
    assert list(store.query(EX + "SELECT ?x WHERE { BIND(ex:a.b AS ?x) }"))[0]["x"].value.endswith("/a.b")
    with pytest.raises(SyntaxError):
        store.query(EX + "SELECT ?x WHERE { BIND(ex:a.b.c AS ?x) }")


# -- tokens ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (r"ex:\# AS", [("PNAME", r"ex:\#"), ("WORD", "AS")]),
    ("ex:a%23b", [("PNAME", "ex:a%23b")]),
    ("ex:a.b.a", [("PNAME", "ex:a.b"), ("PUNCT", "."), ("WORD", "a")]),
    ("ex:a. a", [("PNAME", "ex:a"), ("PUNCT", "."), ("WORD", "a")]),
    ("ex: :x :", [("PNAME", "ex:"), ("PNAME", ":x"), ("PNAME", ":")]),
    ("ex:a#b", [("PNAME", "ex:a"), ("COMMENT", "#b")]),
    (r'"a\"b" a', [("STRING", r'"a\"b"'), ("WORD", "a")]),
    (r'"a\u0022b"', [("STRING", r'"a\u0022b"')]),
    ("'''it's'''", [("STRING", "'''it's'''")]),
    ("'''a''''b'", [("STRING", "'''a'''"), ("STRING", "'b'")]),
    ('"#" # c', [("STRING", '"#"'), ("COMMENT", "# c")]),
    (r"<http://x/\u0041#f>", [("IRI", r"<http://x/\u0041#f>")]),
    ("<a a>", [("PUNCT", "<"), ("WORD", "a"), ("WORD", "a"), ("PUNCT", ">")]),
    ("?x $y ?", [("VAR", "?x"), ("VAR", "$y"), ("PUNCT", "?")]),
    ("_:b.c.", [("BNODE", "_:b.c"), ("PUNCT", ".")]),
    ('"x"@en-GB--ltr', [("STRING", '"x"'), ("LANGTAG", "@en-GB--ltr")]),
    ("1 1.5 .5 1e3 1.E-2 1.", [("NUMBER", "1"), ("NUMBER", "1.5"), ("NUMBER", ".5"), ("NUMBER", "1e3"),
                               ("NUMBER", "1.E-2"), ("NUMBER", "1"), ("PUNCT", ".")]),
    ("<<( ?s ?p ?o )>>", [("PUNCT", "<<("), ("VAR", "?s"), ("VAR", "?p"), ("VAR", "?o"), ("PUNCT", ")>>")]),
])
def test_tokens_are_the_engines(text, expected):
    wrapped = "SELECT * WHERE { " + text + "\n}"
    got = kinds(wrapped)[4:-1]
    assert got == expected


@pytest.mark.parametrize("expression, operator", [
    ("FILTER(?a<?b)", True), ("FILTER(1<2)", True), ('FILTER("a"@en<?b)', True),
    ("FILTER(STR(?a)<?b)", True), ("FILTER(EXISTS{}<?b)", True), ("FILTER(<<( ?s ?p ?o )>><?b)", True),
    ("FILTER(?a IN (<x>, <y>))", False), ("FILTER(<f>(?a))", False), ("FILTER <f>(<x>)", False),
    ("?s ?p (?a <x>)", False), ("?s <p>|<q> <o>", False), ("VALUES (?a ?b) { (<x> <y>) }", False),
    ("?s ?p [ <q> <o> ]", False), ("?s ?p << ?a <q> <o> >>", False), ("FILTER(true<?b)", True),
])
def test_less_than_is_an_operator_only_after_an_operand_in_an_expression(expression, operator):
    tokens = [t for t in tokenize("SELECT * WHERE { " + expression + " }") if t.text.startswith("<")
              and t.kind in ("PUNCT", "IRI") and t.text not in ("<<(", "<<")]
    assert any(t.operator for t in tokens) is operator
    if not operator:
        assert all(t.kind == "IRI" for t in tokens)


def test_outside_braces_a_less_than_belongs_to_the_projection_or_a_modifier():
    text = "SELECT (?a<?b AS ?c) WHERE { ?a ?p ?b } ORDER BY <f>(?a) ?b <g>(?c)"
    ops = [t for t in tokenize(text) if t.operator]
    iris = [t.text for t in tokenize(text) if t.kind == "IRI"]
    assert len(ops) == 1 and iris == ["<f>", "<g>"]


# -- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "SELECT * WHERE { SERVICE <http://x/> { ?s ?p ?o } }",
    "select * where { service silent <http://x/> {} }",
    "SELECT * WHERE { SeRvIcE#c\n<http://x/> {} }",
    EX + "SELECT * WHERE { BIND(ex:\\# AS ?z) SERVICE <http://x/> { ?s ?p ?o }\n}",
    EX + "SELECT * WHERE { FILTER(?x<ex:b)SERVICE?s#>\n{ ?a ?b ?c } }",
    EX + "SELECT * WHERE { FILTER(EXISTS{}<ex:b)SERVICE?s#>\n{ ?a ?b ?c } }",
])
def test_service_is_forbidden_with_its_position(text):
    with pytest.raises(ForbiddenQuery, match=r"SERVICE \(a federated query.*line \d+, column \d+"):
        check(text)


def test_keywords_are_read_like_the_other_terminals_longest_first():
    assert [t.text for t in tokenize("INSERTDATA{}") if t.kind == "WORD"] == ["INSERT", "DATA"]
    assert kinds("SELECT*{}LIMIT5")[-2:] == [("WORD", "LIMIT"), ("NUMBER", "5")]
    with pytest.raises(ForbiddenQuery):
        check("SELECT * WHERE { ?s ?p trueSERVICE <http://x/> {} }")


def test_no_run_of_keywords_hides_service_or_load():
    """Every keyword before and after SERVICE or LOAD, written together: never passed."""
    from kb.guard import KEYWORDS

    words = sorted(KEYWORDS) + ["a"]
    for remote in ("SERVICE", "LOAD", "service", "Load"):
        for other in words:
            for glued in (other + remote, remote + other, other + remote + other):
                for text, update in ((f"SELECT * WHERE {{ {glued} <http://x/> {{}} }}", False),
                                     (f"{glued} <http://x/>", True)):
                    with pytest.raises(QueryRefused):
                        check(text, update=update)


@pytest.mark.parametrize("text", ["LOAD <http://x/doc>", "load silent <http://x/> into graph <g>",
                                  "CLEAR ALL ; LOAD <http://x/>"])
def test_load_is_forbidden_in_updates(text):
    with pytest.raises(ForbiddenQuery, match="LOAD"):
        check(text, update=True)


@pytest.mark.parametrize("text, message", [
    ("SELECT * WHERE { ?s ?p ?o } LIMIT x", "'x' is not a SPARQL keyword"),
    ("ASK { ?s aSERVICE ?o }", "column 10: 'aSERVICE' is not a SPARQL keyword"),
    ("ASK { ?s A ?o }", "'A' is not a SPARQL keyword"),
    ("SELECT * WHERE { ?s ?p ?o } LIMITx", "column 29: 'LIMITx' is not a SPARQL keyword"),
    ("\ufffd\n{", "column 1: '\ufffd' is not a SPARQL keyword"),
    ("ASK { ?s \u2070 ?o }", "'\u2070' is not a SPARQL keyword"),
    (EX + "SELECT * WHERE { SERVICEex:q { ?s ?p ?o } }", "begins with a keyword that reaches other hosts"),
    ("PREFIX SERVICEex: <http://x/> SELECT * WHERE { SERVICEex:q ?p ?o }", "begins with a keyword"),
    ("PREFIXex: <http://x/> ASK {}", "if you meant 'PREFIX ex:'"),
    ("SELECT * WHERE { ?s foo:bar ?o }", r"unknown prefix foo: \(declare it with PREFIX foo: <…>\)"),
    ("SELECT * WHERE { ?s ?p ?o ", "'{' is never closed"),
    ("SELECT * WHERE { ?s ?p ?o ) }", "'\\)' closes no open '\\('"),
    ('SELECT * WHERE { BIND("a\nb" AS ?x) }', "a string that is not closed"),
    ("SEL\\u0045CT * {}", "'SEL' is not a SPARQL keyword"),
    ("ASK { ?s ?p ?o } \\u0041", r"unexpected character '\\\\'"),
    ("ASK { ?s ?p ?o } \u00a7", "unexpected character '\u00a7'"),
    ("INSERT DATA { <a> <b> <c> }", "this is a SPARQL Update: send it as 'update'"),
])
def test_syntax_refusals_name_what_is_wrong(text, message):
    with pytest.raises(QueryRefused, match=message):
        check(text)


def test_a_query_sent_as_an_update_is_refused():
    with pytest.raises(QueryRefused, match="this is a SELECT query: send it as 'query'"):
        check("SELECT * {}", update=True)


def test_nesting_limit_is_exact():
    def nested(depth: int) -> str:
        return "SELECT * WHERE " + "{" * depth + "}" * depth

    check(nested(MAX_NESTING))
    with pytest.raises(GuardSyntaxError, match=f"nested more than {MAX_NESTING} deep"):
        check(nested(MAX_NESTING + 1))
    with pytest.raises(GuardSyntaxError, match="nested more than"):
        check("SELECT * WHERE { FILTER(" + "(" * 10_000 + "1" + ")" * 10_000 + ") }")


def test_error_positions_count_lines_and_columns_from_one():
    assert position("ab\ncd", 4) == "line 2, column 2"
    with pytest.raises(GuardSyntaxError, match="line 3, column 8"):
        check("SELECT *\nWHERE {\n    ?s foo:x ?o }")


# -- what the engine receives ------------------------------------------------------------------
def test_prefix_labels_are_renamed_and_predeclared_ones_passed_on():
    checked = check("PREFIX service: <http://s/> PREFIX ex: <http://e/> SELECT * WHERE { ?s ex:p kd:X }",
                    prefixes={"kd": "http://kd/", "unused": "http://u/"})
    assert checked.text == "PREFIX p0: <http://s/> PREFIX p1: <http://e/> SELECT * WHERE { ?s p1:p p2:X }"
    assert checked.prefixes == {"p2": "http://kd/"}
    assert checked.form == "SELECT"


def test_redeclared_prefixes_keep_their_meaning():
    checked = check("PREFIX a: <http://1/> SELECT * WHERE { ?s a:x ?o } ", update=False)
    assert "p0:x" in checked.text
    two = check("PREFIX e: <http://1/> INSERT DATA { e:a e:b e:c } ; PREFIX e: <http://2/> "
                "INSERT DATA { e:a e:b e:c }", update=True)
    assert two.text.count("p0:") == 3 + 1 and two.text.count("p1:") == 3 + 1


def test_operators_get_a_space_and_nothing_else_changes():
    text = "# a comment\nSELECT * WHERE { ?s ?p ?o FILTER(?o<?s && ?o<=1) } # SERVICE\n"
    assert check(text).text == text.replace("?o<?s", "?o< ?s").replace("?o<=1", "?o<= 1")


def test_using_graph_parameters_become_using_clauses():
    text = "INSERT { ?s ?p 1 } WHERE { ?s ?p ?o } ; DELETE { ?s ?p 2 } WHERE { ?s ?p ?o }"
    checked = check(text, update=True, using_graphs=("http://g/1",), using_named_graphs=("http://g/2",))
    assert checked.text.count("USING <http://g/1> USING NAMED <http://g/2> WHERE") == 2


@pytest.mark.parametrize("text, message", [
    ("WITH <http://g/> DELETE { ?s ?p ?o } WHERE { ?s ?p ?o }", "use only one of the two"),
    ("DELETE { ?s ?p ?o } USING <http://g/> WHERE { ?s ?p ?o }", "use only one of the two"),
    ("DELETE WHERE { ?s ?p ?o }", "cannot apply to DELETE WHERE"),
])
def test_using_graph_parameters_conflicts(text, message):
    with pytest.raises(QueryRefused, match=message):
        check(text, update=True, using_graphs=("http://g/1",))


def test_using_graph_parameters_must_be_iris():
    with pytest.raises(QueryRefused, match="absolute IRIs"):
        check("INSERT { ?s ?p 1 } WHERE { ?s ?p ?o }", update=True, using_graphs=("not an iri",))


# -- against the engine ----------------------------------------------------------------------
def test_every_live_bypass_attempt_is_refused(listener):
    attempts = bypass_attempts(f"http://127.0.0.1:{listener.port}/")
    live = 0
    for text, update in attempts:
        outcome = engine(text, update=update, listener=listener)
        live += outcome.tried
        if outcome.tried:
            with pytest.raises(QueryRefused):
                check(text, update=update)
    assert len(attempts) >= 1000 and live >= 0.99 * len(attempts), (live, len(attempts))


def classify(text: str, update: bool, listener: Listener) -> str:
    """How the guard's verdict compares with the engine's reading of the same text."""
    raw = engine(text, update=update, listener=listener)
    try:
        checked = check(text, update=update)
    except ForbiddenQuery as refusal:
        if raw.tried:
            return "forbidden; the engine contacted the listener"
        if not raw.parsed:
            return "forbidden; the engine rejects the text too"
        # The engine parsed it but never evaluated the SERVICE (ASK stopping early, an
        # optimiser dropping a branch): a character the engine cannot accept put where the
        # guard saw the keyword must make the engine fail, or the engine did not read it as code.
        at = refusal.offset
        probe = engine(text[:at] + "\u00a7" + text[at + 1:], update=update, listener=listener)
        assert not probe.parsed, f"forbidden, but the engine does not read a keyword there: {text!r}"
        return "forbidden; the engine reads the keyword (not evaluated)"
    except QueryRefused as refusal:
        if raw.tried:
            return "refused; the engine contacted the listener"
        if not raw.parsed:
            return "refused; the engine rejects the text too"
        # Where the engine's parser splits a keyword off a prefixed name (a longest-match
        # tokenizer, as the standard has it, reads one name): documented in kb.guard.
        assert any(reason in str(refusal) for reason in (
            "space after PREFIX", "begins with a keyword that reaches")), \
            f"refused a text the engine accepts: {text!r}: {refusal}"
        return "refused; a keyword the engine splits off a prefixed name"
    assert not raw.tried, f"the guard passed a text that makes the engine connect: {text!r}"
    rewritten = engine(checked.text, update=update, listener=listener, prefixes=checked.prefixes or None)
    assert not rewritten.tried, f"the text given to the engine connects: {checked.text!r}"
    assert rewritten.parsed == raw.parsed, f"the rewrite changed validity: {text!r}"
    assert rewritten.result == raw.result, f"the rewrite changed the answer: {text!r}"
    assert rewritten.error.split(":")[0] == raw.error.split(":")[0]
    return "passed; same answer as the original" if raw.parsed else "passed; invalid for the engine too"


def test_differential_against_the_engine(listener):
    """6,000 generated and mutated requests plus every crafted attempt: no disagreement."""
    counts: collections.Counter[str] = collections.Counter()
    cases = [case for seed in range(3) for case in Generator(listener.port, seed).cases(2000)]
    cases += bypass_attempts(f"http://127.0.0.1:{listener.port}/")
    for text, update in cases:
        counts[classify(text, update, listener)] += 1
    print("\n".join(f"{n:6d}  {what}" for what, n in sorted(counts.items())))
    assert sum(counts.values()) >= 7000
    # The comparison is only informative if every kind of outcome occurs often.
    for what in ("forbidden; the engine contacted the listener", "passed; same answer as the original",
                 "refused; the engine rejects the text too", "passed; invalid for the engine too"):
        assert counts[what] >= 200, counts


def test_nothing_but_a_refusal_ever_comes_out(listener):
    """20,000 random and mutated texts: the guard answers each with a verdict or a QueryRefused,
    never another exception (which the server could only answer with a 500)."""
    import random

    rng = random.Random(7)
    alphabet = "ab{}()<>\"'#\\%?$:_.;,@^|!*&=\n\t \u00e9\u2028\x00\ufffd\u2070\u0300\U0001F600SELECTservice"
    generator = Generator(listener.port, seed=99)
    cases = generator.cases(10_000)
    for i in range(20_000):
        if i % 2:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        else:
            text = next(cases)[0]
        for update in (False, True):
            try:
                check(text, update=update, prefixes={"kd": "http://kd/"},
                      using_graphs=("http://g/",) if update and i % 3 == 0 else ())
            except QueryRefused:
                pass
