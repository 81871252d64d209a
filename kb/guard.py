"""Read a SPARQL request the way the engine will, before the engine reads it.

pyoxigraph runs `SERVICE <http://…>` by opening an HTTP connection and an update's
`LOAD <…>` by fetching a document. Neither may ever happen here. This module is the first
of two independent layers that make sure of it (the second, `kb.sandbox`, takes the network
away from the processes that run queries):

1. **Tokens, exactly as the engine forms them.** The tokenizer follows the terminals of the
   engine's grammar (SPARQL 1.1, plus the SPARQL 1.2 tokens pyoxigraph 0.5 accepts), including
   where the engine differs from the letter of the SPARQL 1.1 text: codepoint escapes are
   *not* decoded before parsing (``SERV\\u0049CE`` is a syntax error, not SERVICE); a local
   name may hold escapes such as ``\\#`` and ``%23`` and, after a dot, at most one more
   group (``ex:a.b`` but not ``ex:a.b.c``); IRIs may hold ``\\uXXXX``. A ``<`` is the
   less-than operator where an expression expects an operator and an IRI elsewhere, so the
   tokenizer tracks whether it is inside an expression, a group, a list or a data block.
2. **Keywords cannot hide.** Keywords are read like the grammar's other terminals, the
   longest that fits whatever follows (``LIMIT5`` is LIMIT 5 and ``trueSERVICE`` is true
   SERVICE, as the engine reads them); letters that are no keyword are a syntax error. The
   engine's parser (a PEG) goes further: where a prefixed name cannot stand it tries a
   keyword at the same place, so ``SERVICEex:x { … }`` becomes ``SERVICE ex:x { … }``. A
   prefixed name whose label begins with SERVICE or LOAD (after other keywords, if any) is
   therefore refused, and every prefix label is renamed to a neutral one (``p0``, ``p1`` …)
   in the text the engine receives, so that no name can begin with a keyword it splits off.
3. **Refuse, or hand over a text that means the same.** A request with a SERVICE or LOAD
   keyword is refused. Otherwise the engine gets the original text with only the prefix
   labels renamed and a space after each comparison `<` / `<=`, so that the engine cannot
   read one of them as the start of an IRI.

Also checked here, so that the engine never sees them: brackets nested deeper than
`MAX_NESTING` (the engine's recursive-descent parser would overflow its stack), unbalanced
brackets, prefixes never declared (``unknown prefix foo:``), a query sent as an update and
the reverse. `check(..., using_graphs=…)` applies the SPARQL Protocol's `using-graph-uri`
and `using-named-graph-uri` parameters to an update as USING / USING NAMED clauses.

`tests/test_guard.py` compares every verdict with pyoxigraph itself (`tests/guard_oracle.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_NESTING = 128

# -- terminals (SPARQL 1.1 §19.8, as pyoxigraph's parser defines them) ---------------------
# pyoxigraph stops PN_CHARS_BASE at U+FFFD (the standard goes on to U+EFFFF).
_BASE = ("A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF"
         "\u200C-\u200D\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD")
_U = _BASE + "_"
_CHARS = _U + "\\-0-9\u00B7\u0300-\u036F\u203F-\u2040"
_HEX = "[0-9A-Fa-f]"
_PLX = rf"(?:%{_HEX}{_HEX}|\\[_~.\-!$&'()*+,;=/?#@%])"
_UCHAR = rf"(?:\\u{_HEX}{{4}}|\\U{_HEX}{{8}})"
_ECHAR = r"""(?:\\[tbnrf"'\\])"""

PN_PREFIX = rf"[{_BASE}][{_CHARS}]*+(?:\.++[{_CHARS}]++)*+"
# One optional group after a run of dots: `ex:a.b` is one name, `ex:a.b.c` is `ex:a.b` `.` `c`.
PN_LOCAL = (rf"(?:[{_U}:0-9]|{_PLX})(?:[{_CHARS}:]|{_PLX})*+"
            rf"(?:\.++(?:[{_CHARS}:]|{_PLX})++)?+")

_PATTERNS = {
    "PNAME": re.compile(rf"(?P<prefix>{PN_PREFIX})?:(?P<local>{PN_LOCAL})?"),
    "WORD": re.compile(r"[A-Za-z_][A-Za-z0-9_]*+"),
    "VAR": re.compile(rf"[?$][{_U}0-9][{_U}0-9\u00B7\u0300-\u036F\u203F-\u2040]*+"),
    "BNODE": re.compile(rf"_:[{_U}0-9][{_CHARS}]*+(?:\.++[{_CHARS}]++)*+"),
    "LANGTAG": re.compile(r"@[a-zA-Z]++(?:-[a-zA-Z0-9]++)*+(?:--[a-zA-Z]++)?+"),
    "NUMBER": re.compile(r"(?:[0-9]++\.[0-9]*+|\.[0-9]++|[0-9]++)[eE][+-]?[0-9]++"
                         r"|[0-9]*+\.[0-9]++|[0-9]++"),
    "STRING": re.compile(
        rf"""'''(?:(?:''|')?+(?:[^'\\]|{_ECHAR}|{_UCHAR}))*+'''"""
        rf'''|"""(?:(?:""|")?+(?:[^"\\]|{_ECHAR}|{_UCHAR}))*+"""'''
        rf"""|'(?:[^'\\\n\r]|{_ECHAR}|{_UCHAR})*+'"""
        rf'''|"(?:[^"\\\n\r]|{_ECHAR}|{_UCHAR})*+"'''),
    "IRI": re.compile(rf"<(?:[^<>\"{{}}|^`\\\x00-\x20]|{_UCHAR})*+>"),
    "COMMENT": re.compile(r"#[^\r\n]*+"),
    "SPACE": re.compile(r"[ \t\r\n]++"),
}
# A keyword, matched like the grammar's other terminals: the longest that fits, whatever
# follows (`LIMIT5` is LIMIT 5, `trueSERVICE` is true SERVICE, as the engine reads them).
# Only `a` is case-sensitive.
_KEYWORD: re.Pattern[str]  # set below, once KEYWORDS is known

# Longest first, so that `<<(` is one token and `<` `<` `(` never is.
_PUNCTUATION = ("<<(", ")>>", "<<", ">>", "{|", "|}", "^^", "||", "&&", "!=", "<=", ">=",
                "{", "}", "(", ")", "[", "]", ".", ",", ";", "*", "+", "-", "/", "=", "!",
                "|", "^", "?", "<", ">", "~")

# -- words ---------------------------------------------------------------------------------
# Every keyword of the grammar (the standard's and the SPARQL 1.2 ones pyoxigraph adds): the
# grammar's own vocabulary, not a list of refused spellings. Letters that are no keyword are
# a syntax error.
KEYWORDS = frozenset("""
ABS ADD ADJUST ALL AS ASC ASK AVG BASE BIND BNODE BOUND BY CEIL CLEAR COALESCE CONCAT
CONSTRUCT CONTAINS COPY COUNT CREATE DATA DATATYPE DAY DEFAULT DELETE DESC DESCRIBE DISTINCT
DROP ENCODE_FOR_URI EXISTS FILTER FLOOR FROM GRAPH GROUP GROUP_CONCAT HAVING HOURS IF IN
INSERT INTO IRI LANG LANGDIR LANGMATCHES LATERAL LCASE LIMIT LOAD MAX MD5 MIN MINUS MINUTES
MONTH MOVE NAMED NOT NOW OBJECT OFFSET OPTIONAL ORDER PREDICATE PREFIX RAND REDUCED REGEX
REPLACE ROUND SAMPLE SECONDS SELECT SEPARATOR SERVICE SHA1 SHA256 SHA384 SHA512 SILENT STR
STRAFTER STRBEFORE STRDT STRENDS STRLANG STRLANGDIR STRLEN STRSTARTS STRUUID SUBJECT SUBSTR
SUM TIMEZONE TO TRIPLE TZ UCASE UNDEF UNION URI USING UUID VALUES VERSION WHERE WITH YEAR
HASLANG HASLANGDIR ISBLANK ISIRI ISLITERAL ISNUMERIC ISTRIPLE ISURI SAMETERM TRUE FALSE
""".split())
_KEYWORD_ALTERNATIVES = "|".join(sorted(KEYWORDS, key=len, reverse=True))
_KEYWORD = re.compile(f"(?i:{_KEYWORD_ALTERNATIVES})|a")
# Every token but `<` (whose meaning depends on where it stands), in one pattern, in the
# order that makes the longest match win where two could start at the same character.
_MASTER = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in [
    ("SPACE", _PATTERNS["SPACE"].pattern), ("COMMENT", _PATTERNS["COMMENT"].pattern),
    ("STRING", _PATTERNS["STRING"].pattern), ("VAR", _PATTERNS["VAR"].pattern),
    ("BNODE", _PATTERNS["BNODE"].pattern), ("LANGTAG", _PATTERNS["LANGTAG"].pattern),
    ("NUMBER", _PATTERNS["NUMBER"].pattern),  # before PUNCT: `.5` is a number, not `.` `5`
    ("PUNCT", "|".join(re.escape(p) for p in _PUNCTUATION if p[0] != "<")),
    ("PNAME", _PATTERNS["PNAME"].pattern), ("WORD", _PATTERNS["WORD"].pattern),  # cut to a keyword below
]))
_LONGEST_KEYWORD = max(map(len, KEYWORDS))
_NAME_RUN = re.compile(f"[{_CHARS}]+")  # for messages: the letters a bad word is made of


def _keyword_at_start(letters: str) -> str | None:
    """The longest keyword the run of letters begins with (what `_KEYWORD` would match)."""
    for length in range(min(len(letters), _LONGEST_KEYWORD), 0, -1):
        if letters[:length].upper() in KEYWORDS:
            return letters[:length]
    return "a" if letters[0] == "a" else None
# Keywords that make the engine fetch from elsewhere: refused in queries and updates alike.
REMOTE = {"SERVICE": "SERVICE (a federated query to another endpoint)",
          "LOAD": "LOAD (fetching a document from an IRI)"}
QUERY_FORMS = frozenset({"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"})
UPDATE_FORMS = frozenset({"INSERT", "DELETE", "LOAD", "CLEAR", "CREATE", "DROP", "COPY", "MOVE",
                          "ADD", "WITH"})
# After these words a `(` opens an expression (FILTER(…), BIND(…), regex(…), COUNT(…) …).
_EXPRESSION_OPENERS = (KEYWORDS - QUERY_FORMS - UPDATE_FORMS
                       - {"AS", "BASE", "PREFIX", "VALUES", "VERSION", "WHERE", "GRAPH", "NAMED",
                          "OPTIONAL", "MINUS", "UNION", "SERVICE", "SILENT", "LATERAL", "FROM",
                          "DEFAULT", "ALL", "DATA", "INTO", "TO", "USING", "DISTINCT", "REDUCED",
                          "LIMIT", "OFFSET", "UNDEF", "TRUE", "FALSE", "SEPARATOR", "ORDER",
                          "GROUP", "EXISTS"})

# Where a `<` is the less-than operator: inside an expression, right after an operand.
_OPERAND_ENDS = {"VAR", "IRI", "PNAME", "STRING", "LANGTAG", "NUMBER"}

PATTERN, EXPRESSION, LIST, DATA = "group", "expression", "list", "data"
_OPENERS = {"{": "}", "(": ")", "[": "]", "<<(": ")>>", "<<": ">>", "{|": "|}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


class QueryRefused(ValueError):
    """The request is not sent to the engine; the message says why (an HTTP 400)."""

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset  # where in the text, when the refusal is about one place


class ForbiddenQuery(QueryRefused):
    """The request asks for something this service never does: contact another host."""


class GuardSyntaxError(QueryRefused):
    """The request is not SPARQL the way the engine reads it (found before the engine)."""


class Token:
    """One token: its kind (SPACE, COMMENT, IRI, PNAME, VAR, BNODE, LANGTAG, NUMBER, STRING,
    WORD, PUNCT), its text, where it starts, and for `<` / `<=` whether it is a comparison
    (rather than the start of an IRI)."""

    __slots__ = ("kind", "text", "start", "operator", "word")

    def __init__(self, kind: str, text: str, start: int, operator: bool = False):
        self.kind, self.text, self.start, self.operator = kind, text, start, operator
        self.word = text.upper() if kind == "WORD" else ""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Token({self.kind}, {self.text!r}, {self.start})"

    @property
    def prefix(self) -> str:
        return self.text.split(":", 1)[0] if self.kind == "PNAME" else ""


def position(text: str, offset: int) -> str:
    """`line L, column C` (1-based) of an offset, as the engine's messages count them."""
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"




def tokenize(text: str) -> list[Token]:
    """Every token of the text, whitespace and comments included, in order.

    Raises GuardSyntaxError at the first character that starts no token, at brackets that
    do not pair up, and at brackets nested deeper than MAX_NESTING.
    """
    tokens: list[Token] = []
    significant: list[Token] = []  # neither space nor comment
    frames: list[tuple[Token, str]] = []  # open brackets, with what each contains
    values_pending = False  # after VALUES, the next `{` opens a data block
    pos, end = 0, len(text)

    def fail(message: str, at: int):
        raise GuardSyntaxError(f"SPARQL syntax error at {position(text, at)}: {message}")

    def not_a_keyword(at: int):
        """Letters that start no token: name the whole run (`LIMITx`, not `x`) in the message."""
        last = significant[-1] if significant else None
        if last is not None and last.kind == "WORD" and last.start + len(last.text) == at:
            at = last.start  # a keyword was read off the front of these letters
        fail(f"'{_NAME_RUN.match(text, at).group()}' is not a SPARQL keyword", at)

    def inside() -> str | None:
        return frames[-1][1] if frames else None

    def operator_expected() -> bool:
        """Inside an expression, right after an operand: `<` is less-than, not an IRI."""
        if inside() != EXPRESSION or not significant:
            return False
        last = significant[-1]
        # `)` ends a call or a bracketed expression, `}` an EXISTS { … }, `)>>` a triple term.
        return (last.kind in _OPERAND_ENDS or last.word in ("TRUE", "FALSE")
                or last.kind == "PUNCT" and last.text in (")", "}", ")>>"))

    def paren_holds() -> str:
        """What a `(` opened here holds: an expression, or a list of terms."""
        if inside() == EXPRESSION:
            return EXPRESSION
        if inside() in (LIST, DATA):
            return LIST
        last = significant[-1] if significant else None
        before = significant[-2] if len(significant) > 1 else None
        if last is not None and last.word in _EXPRESSION_OPENERS:
            return EXPRESSION  # FILTER(…), BIND(…), regex(…), COUNT(…), HAVING(…) …
        if last is not None and last.kind in ("IRI", "PNAME") and before is not None \
                and before.word == "FILTER":
            return EXPRESSION  # FILTER <f>(…): a function call
        if inside() is None and not values_pending:
            return EXPRESSION  # outside braces: SELECT (… AS ?x), GROUP BY (…), ORDER BY f(…)
        return LIST  # a collection, a path, the variables of VALUES

    while pos < end:
        if text[pos] == "<":
            if operator_expected():  # less-than (or less-or-equal), even when `<<` follows
                token = Token("PUNCT", "<=" if text.startswith("<=", pos) else "<", pos, operator=True)
            elif text.startswith("<<(", pos) or text.startswith("<<", pos):
                token = Token("PUNCT", "<<(" if text.startswith("<<(", pos) else "<<", pos)
            else:
                match = _PATTERNS["IRI"].match(text, pos)
                token = Token("IRI", match.group(), pos) if match else \
                    Token("PUNCT", "<=" if text.startswith("<=", pos) else "<", pos)
        else:
            match = _MASTER.match(text, pos)
            if match is None:
                char = text[pos]
                if char in "'\"":
                    fail("a string that is not closed (on its line, for '…' and \"…\") "
                         "or that holds an invalid escape", pos)
                if text.startswith("_:", pos):
                    fail("a blank node label with no name after '_:'", pos)
                if _NAME_RUN.match(char):
                    not_a_keyword(pos)
                fail(f"unexpected character {char!r}", pos)
            kind, token_text = match.lastgroup, match.group()
            if kind == "WORD":
                token_text = _keyword_at_start(token_text)
                if token_text is None:
                    not_a_keyword(pos)
            token = Token(kind, token_text, pos)
        tokens.append(token)
        pos += len(token.text)
        if token.kind in ("SPACE", "COMMENT"):
            continue
        if token.kind == "PUNCT" and token.text in _OPENERS:
            if token.text == "{":
                holds = DATA if values_pending else PATTERN
                values_pending = False
            else:
                holds = paren_holds() if token.text == "(" else LIST
            frames.append((token, holds))
            if len(frames) > MAX_NESTING:
                fail(f"brackets nested more than {MAX_NESTING} deep", token.start)
        elif token.kind == "PUNCT" and token.text in _CLOSERS:
            if not frames or frames[-1][0].text != _CLOSERS[token.text]:
                fail(f"'{token.text}' closes no open '{_CLOSERS[token.text]}'", token.start)
            frames.pop()
        elif token.word == "VALUES":
            values_pending = True
        significant.append(token)
    if frames:
        fail(f"'{frames[-1][0].text}' is never closed", frames[-1][0].start)
    return tokens


@dataclass(frozen=True)
class Checked:
    """A request that passed: its form, and the text and prefixes to give the engine."""

    form: str  # SELECT, ASK, CONSTRUCT, DESCRIBE, the first update keyword, or ""
    text: str
    prefixes: dict[str, str] = field(default_factory=dict)


def check(text: str, *, update: bool = False, prefixes: Mapping[str, str] | None = None,
          using_graphs: tuple[str, ...] = (), using_named_graphs: tuple[str, ...] = ()) -> Checked:
    """Check a query (or, with `update=True`, an update) before the engine sees it.

    `prefixes` are the ones the caller predeclares (the engine gets them under their new
    labels). `using_graphs` / `using_named_graphs` are the Protocol's dataset parameters of
    an update, applied as USING / USING NAMED to each operation that has a WHERE clause.
    Raises ForbiddenQuery for SERVICE or LOAD and GuardSyntaxError (both QueryRefused) for
    anything the engine must not be given.
    """
    predeclared = dict(prefixes or {})
    tokens = tokenize(text)
    significant = [t for t in tokens if t.kind not in ("SPACE", "COMMENT")]
    for i, t in enumerate(significant):
        if t.word in REMOTE:
            raise ForbiddenQuery(f"{REMOTE[t.word]} is not allowed ({position(text, t.start)}): "
                                 "this service never contacts other hosts or reads documents", t.start)
        declaration = i > 0 and significant[i - 1].word == "PREFIX"
        if t.kind == "PNAME" and not declaration and _REMOTE_AFTER_KEYWORDS.match(t.prefix):
            raise GuardSyntaxError(
                f"SPARQL syntax error at {position(text, t.start)}: the prefixed name '{t.text}' "
                "begins with a keyword that reaches other "
                "hosts; this engine reads a keyword without looking at what follows it, so it could "
                "run that keyword here. Put a space after the keyword, or choose another prefix label")
    first = _after_prologue(significant)
    form = first.word if first is not None else ""
    if not update and form in UPDATE_FORMS:
        raise QueryRefused("this is a SPARQL Update: send it as 'update' (POST), not as 'query'")
    if update and form in QUERY_FORMS:
        raise QueryRefused(f"this is a {form} query: send it as 'query', not as 'update'")
    renamed, engine_prefixes = _rename_prefixes(text, significant, predeclared)
    # What the grammar says a request begins with (the engine is slow to find out otherwise).
    if not update and form not in QUERY_FORMS:
        raise GuardSyntaxError(f"SPARQL syntax error at {position(text, first.start if first else len(text))}: "
                               "a query begins with SELECT, CONSTRUCT, DESCRIBE or ASK "
                               "(after any BASE and PREFIX declarations)")
    if update and first is not None and form not in UPDATE_FORMS:
        raise GuardSyntaxError(f"SPARQL syntax error at {position(text, first.start)}: an update "
                               "operation begins with " + ", ".join(sorted(UPDATE_FORMS)))
    insertions = _using_clauses(text, significant, using_graphs, using_named_graphs) if update else {}
    pieces = []
    for t in tokens:
        pieces.append(insertions.get(t.start, ""))
        if t.start in renamed:
            pieces.append(renamed[t.start])
        elif t.operator:
            pieces.append(t.text + " ")  # so the engine cannot read it as the start of an IRI
        else:
            pieces.append(t.text)
    return Checked(form, "".join(pieces), engine_prefixes)


# A prefix label the engine could read as SERVICE or LOAD, possibly after other keywords
# (`trueSERVICEx:` is read as `true SERVICE x:` where a term cannot go on).
_REMOTE_AFTER_KEYWORDS = re.compile(
    "(?:{})*?(?:SERVICE|LOAD)".format("|".join(sorted(KEYWORDS, key=len, reverse=True))), re.I)


def _after_prologue(significant: list[Token]) -> Token | None:
    """The first token after the prologue (BASE, PREFIX and VERSION declarations), if any."""
    i = 0
    while i < len(significant):
        word = significant[i].word
        if word in ("BASE", "VERSION"):
            i += 2
        elif word == "PREFIX":
            i += 3
        else:
            return significant[i]
    return None


def _rename_prefixes(text: str, significant: list[Token],
                     predeclared: dict[str, str]) -> tuple[dict[int, str], dict[str, str]]:
    """New labels for every prefixed name: {token start: new text}, and the engine's prefixes.

    Each PREFIX declaration gets a fresh label, so that later redeclarations keep their
    meaning; the empty prefix (`:name`) keeps its label, which no keyword can begin.
    """
    renamed: dict[int, str] = {}
    bound: dict[str, str] = {}
    engine_prefixes: dict[str, str] = {}
    fresh = iter(f"p{n}" for n in range(10**9))
    for i, t in enumerate(significant):
        if t.kind != "PNAME":
            continue
        label, local = t.text.split(":", 1)
        declaring = i > 0 and significant[i - 1].word == "PREFIX"
        if declaring:
            bound[label] = "" if label == "" else next(fresh)
            new = bound[label]
        elif label in bound:
            new = bound[label]
        elif label in predeclared:
            new = bound[label] = "" if label == "" else next(fresh)
            engine_prefixes[new] = predeclared[label]
        else:
            where = f"SPARQL syntax error at {position(text, t.start)}"
            glued = label[:6].upper() == "PREFIX" and i + 1 < len(significant) \
                and significant[i + 1].kind == "IRI"
            hint = (f"; if you meant 'PREFIX {label[6:]}:', SPARQL needs a space after PREFIX"
                    if glued else "")
            raise GuardSyntaxError(f"{where}: unknown prefix {label}: (declare it with "
                                   f"PREFIX {label}: <…>{hint})")
        if new != label:
            renamed[t.start] = f"{new}:{local}"
    return renamed, engine_prefixes


_ABSOLUTE_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^<>\"{}|^`\\\x00-\x20]*")


def is_absolute_iri(text: str) -> bool:
    """An absolute IRI that can stand between `<` and `>` (a scheme, then no space or `<>"{}|^`\\`)."""
    return bool(_ABSOLUTE_IRI.fullmatch(text))


def _using_clauses(text: str, significant: list[Token], graphs: tuple[str, ...],
                   named: tuple[str, ...]) -> dict[int, str]:
    """USING / USING NAMED clauses to insert before the WHERE of each update operation."""
    if not graphs and not named:
        return {}
    for iri in (*graphs, *named):
        if not is_absolute_iri(iri):
            raise QueryRefused(f"using-graph-uri / using-named-graph-uri must be absolute IRIs, got {iri!r}")
    depth, where = 0, []
    for i, t in enumerate(significant):
        if t.kind == "PUNCT" and t.text in _OPENERS:
            depth += 1
        elif t.kind == "PUNCT" and t.text in _CLOSERS:
            depth -= 1
        elif depth == 0 and t.word in ("USING", "WITH"):
            raise QueryRefused(
                "the update names its dataset with USING/WITH and the request with "
                "using-graph-uri/using-named-graph-uri: use only one of the two")
        elif depth == 0 and t.word == "WHERE":
            if i > 0 and significant[i - 1].word == "DELETE":
                raise QueryRefused("using-graph-uri/using-named-graph-uri cannot apply to "
                                   "DELETE WHERE: write DELETE { … } WHERE { … } instead")
            where.append(t.start)
    clause = "".join(f"USING <{g}> " for g in graphs) + "".join(f"USING NAMED <{g}> " for g in named)
    return {start: clause for start in where}
