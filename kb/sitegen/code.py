"""A technique module's source, cut into explained pieces, read as text (never imported).

The site build must not import torch, so a module is found through its `kdo:pythonModule`
path and parsed with `ast`: the module docstring becomes the page's introduction, and the
rest of the file is cut at every top-level statement into segments, each shown with the
real line numbers beside the docstring of the function or class it defines.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Segment:
    first_line: int  # 1-based line number of the first line shown
    code: str
    title: str = ""  # e.g. "soft_target_kl(student_logits, teacher_logits, temperature)"
    kind: str = ""  # "function", "class" or "" for plain statements
    doc: str = ""  # the docstring, as written (markdown)
    contents: list[str] = field(default_factory=list)  # for plain statements: what they define

    @property
    def last_line(self) -> int:
        return self.first_line + self.code.count("\n")

    @property
    def summary(self) -> str:
        return ", ".join(self.contents)


@dataclass
class SourceFile:
    module: str
    path: Path
    relative: str  # path shown to readers, e.g. reference_impl/techniques/soft_targets.py
    lines: int
    docstring: str
    segments: list[Segment] = field(default_factory=list)
    concept: str | None = None  # the module's CONCEPT constant
    experiments: list[str] = field(default_factory=list)  # Experiment(key=...) literals


def module_path(root: Path, module: str) -> Path:
    """reference_impl.techniques.soft_targets -> <root>/reference_impl/techniques/soft_targets.py"""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
        raise ValueError(f"not a Python module path: {module!r}")
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    """`name(a, b, *, c)`: the parameter names only (the annotations are in the code beside)."""
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    elif a.kwonlyargs:
        names.append("*")
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return f"{node.name}({', '.join(names)})"


def read_source(root: Path, module: str) -> SourceFile:
    path = module_path(root, module)
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    all_lines = text.splitlines()
    body = list(tree.body)
    docstring = ast.get_docstring(tree, clean=True) or ""
    start = 1
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        start = body[0].end_lineno + 1
        body = body[1:]
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.name
    src = SourceFile(module, path, relative, len(all_lines), docstring)

    # Each top-level statement owns the lines from the end of the previous one to its own
    # end, so the comments above a definition go with it; runs of plain statements
    # (imports, constants) are merged into one segment.
    spans: list[list] = []  # [first, last, node or None, contents]
    previous_end = start - 1
    for node in body:
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if not is_def:
            _collect_constants(node, src)
        if not is_def and spans and spans[-1][2] is None:
            spans[-1][1] = node.end_lineno
        else:
            spans.append([previous_end + 1, node.end_lineno, node if is_def else None, []])
        if not is_def:
            for item in _describe(node):
                if item not in spans[-1][3]:
                    spans[-1][3].append(item)
        previous_end = node.end_lineno
    if spans:
        spans[-1][1] = len(all_lines)
    for first, last, node, contents in spans:
        while first <= last and not all_lines[first - 1].strip():
            first += 1
        while last >= first and not all_lines[last - 1].strip():
            last -= 1
        if first > last:
            continue
        segment = Segment(first, "\n".join(all_lines[first - 1:last]), contents=contents)
        if node is not None:
            segment.title = _signature(node)
            segment.kind = "class" if isinstance(node, ast.ClassDef) else "function"
            segment.doc = ast.get_docstring(node, clean=True) or ""
        src.segments.append(segment)
    return src


def _describe(node: ast.stmt) -> list[str]:
    """What a plain top-level statement is, in a few words."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return ["imports"]
    if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
        return ["the command-line entry point"]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
        node, (ast.AnnAssign, ast.AugAssign)) else []
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return [f"`{n}`" for n in names] or ["module-level statements"]


def _collect_constants(node: ast.stmt, src: SourceFile) -> None:
    """CONCEPT = "..." and the keys of the Experiment(...) calls, read from the syntax tree."""
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CONCEPT" for t in node.targets):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            src.concept = node.value.value
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", "")) == "Experiment":
            for kw in call.keywords:
                if kw.arg == "key" and isinstance(kw.value, ast.Constant):
                    src.experiments.append(str(kw.value.value))


def docstring_markdown(text: str) -> str:
    """A docstring as markdown: code spans and indented blocks untouched, bare `<` escaped
    (so that `<module>` is shown, not taken for an HTML tag), numbered claims kept as lists."""
    out: list[str] = []
    in_block = False
    previous_blank = True
    for line in text.splitlines():
        indented = line.startswith("    ") or line.startswith("\t")
        if indented and (in_block or previous_blank):
            in_block = True
            out.append(line)
        else:
            # markdown needs a blank line before a list that follows a paragraph
            if re.match(r"\s{0,3}(\d+\.|[-*+])\s", line) and out and out[-1].strip() \
                    and not re.match(r"\s*(\d+\.|[-*+])\s", out[-1]) and not out[-1].startswith("   "):
                out.append("")
            in_block = in_block and (not line.strip())
            parts = re.split(r"(`+[^`]*`+)", line)
            out.append("".join(p if p.startswith("`") else p.replace("<", "&lt;") for p in parts))
        previous_blank = not line.strip()
    return "\n".join(out)


@dataclass
class ProcedureInfo:
    """What `reference_impl.distill` accepts for a technique, read from its PROCEDURE (never imported)."""
    module: str
    function: str
    teacher: str  # "one", "several", "none" or "optional"
    needs_labels: bool
    needs_features: bool
    settings: dict[str, str] = field(default_factory=dict)  # name -> default as written ("" if required)
    teacher_free_settings: dict[str, str] | None = None  # teacher="optional": the variant run without one


def _keyword_settings(function: ast.FunctionDef, skip: set[str], constants: dict[str, str]) -> dict[str, str]:
    """A procedure's settings: its parameters after the first (ctx), with their defaults' source
    (a module constant such as TEMPERATURE shown as its value)."""
    a = function.args
    positional = (a.posonlyargs + a.args)[1:]
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
    shown = lambda d: "" if d is None else constants.get(d.id, d.id) if isinstance(d, ast.Name) else ast.unparse(d)  # noqa: E731
    return {arg.arg: shown(default) for arg, default in pairs if arg.arg not in skip}


def _literal_constants(tree: ast.Module) -> dict[str, str]:
    """Top-level `NAME = <literal>` assignments (arithmetic of numbers included, e.g. 1 / 100, shown
    as its value), as source text."""
    found, numbers = {}, {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _arithmetic(node.value, numbers)
            if value is not None:
                numbers[node.targets[0].id] = value
                found[node.targets[0].id] = repr(value)
                continue
            try:
                ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            found[node.targets[0].id] = ast.unparse(node.value)
    return found


def _arithmetic(node: ast.expr, names: dict[str, float | int]) -> float | int | None:
    """The value of + - * / ** over numbers and the numeric constants in `names`, or None."""
    operators = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
                 ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _arithmetic(node.operand, names)
        return None if inner is None else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in operators:
        left, right = _arithmetic(node.left, names), _arithmetic(node.right, names)
        if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
            return None
        return operators[type(node.op)](left, right)
    return None


def read_procedure(root: Path, module: str) -> ProcedureInfo | None:
    """The module's `PROCEDURE = Procedure(function, teacher=..., ...)`, or None without one."""
    tree = ast.parse(module_path(root, module).read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PROCEDURE"
                                                     for t in node.targets)):
            continue
        call = node.value
        if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Name)):
            return None
        options = {k.arg: k.value for k in call.keywords}
        literal = lambda name, default: ast.literal_eval(options[name]) if name in options else default  # noqa: E731
        skip = {literal("teacher_setting", None)}
        constants = _literal_constants(tree)
        settings_of = lambda name: _keyword_settings(functions[name], skip, constants) if name in functions else {}  # noqa: E731
        variant = options.get("without_teacher")
        return ProcedureInfo(module, call.args[0].id, literal("teacher", "one"), literal("needs_labels", True),
                             literal("needs_features", False), settings_of(call.args[0].id),
                             settings_of(variant.id) if isinstance(variant, ast.Name) else None)
    return None
