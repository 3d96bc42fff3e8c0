"""The package's modules: no import cycle between them, lazy (function-level) imports included; every module of
every layer package (fer_features/<layer>/*.py) is a node, named by its dotted path under fer_features."""
from __future__ import annotations

import ast
from pathlib import Path

import fer_features

PKG = Path(fer_features.__file__).parent

# Cycles accepted for now (frozensets of dotted module names); none is known since the data layer was split.
KNOWN: set[frozenset[str]] = set()


def module_names(pkg: Path = PKG) -> dict[str, Path]:
    """dotted name under the package ("data.manifest"; a package's __init__: "data") -> file."""
    out = {}
    for p in sorted(pkg.rglob("*.py")):
        parts = list(p.relative_to(pkg).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = p
    return out


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """module -> package modules it imports anywhere in its source (top level or inside functions): for
    ``from X import n`` the module X.n where n is one, else X."""
    mods = module_names(pkg)
    graph: dict[str, set[str]] = {}
    for name, p in mods.items():
        is_pkg = p.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]  # the package the module is in
        out: set[str] = set()
        tree = ast.parse(p.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # ``if TYPE_CHECKING:`` imports: annotations only, never run
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                    target = ".".join(base + (node.module.split(".") if node.module else []))
                elif (node.module or "") == "fer_features":
                    target = ""
                elif (node.module or "").startswith("fer_features."):
                    target = node.module.partition(".")[2]
                else:
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}" if target else a.name
                    if sub in mods:
                        out.add(sub)
                    elif target in mods:
                        out.add(target)
            elif isinstance(node, ast.Import):
                out |= {a.name.partition(".")[2] for a in node.names if a.name.startswith("fer_features.")}
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle, each listed once, starting at its alphabetically smallest module."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.append(path)
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for m in sorted(graph):
        walk(m, m, [m])
    return found


def test_graph_sees_every_layer_and_lazy_imports():
    g = import_graph()
    assert {"errors", "__main__", "data.manifest", "features.cache", "cli.app", "cli"} <= set(g)
    assert "cli.app" in g["__main__"] and "cli.app" in g["cli"]
    assert "errors" in g["features.cache"]  # an absolute import
    lazy = [m for m, deps in g.items() if "features.extract" in deps and m.startswith("reporting.")]
    assert lazy  # reporting.experiments imports extraction inside a function only


def test_graph_skips_type_checking_imports(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n"
                                   "def f():\n    from .sub import c\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "__init__.py").write_text("")
    (tmp_path / "sub" / "c.py").write_text("from .. import a\n")
    g = import_graph(tmp_path)
    assert g == {"a": {"b"}, "b": {"sub.c"}, "sub": set(), "sub.c": {"a"}}
    assert cycles(g) == [["a", "b", "sub.c"]]


def test_cycle_finder():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    bad = [c for c in cycles(import_graph()) if frozenset(c) not in KNOWN]
    assert not bad, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in bad)


def test_old_names_still_importable():
    from fer_features.backbones.pooling import POOLINGS_HELP, parse_pooling
    from fer_features.errors import BackboneError
    from fer_features.features.spec import EXTRACTION_KEYS, cache_options
    from fer_features.backbones import pooling
    from fer_features.features import spec as settings

    assert BackboneError is pooling.BackboneError and parse_pooling is pooling.parse_pooling
    assert POOLINGS_HELP == pooling.POOLINGS_HELP
    assert EXTRACTION_KEYS == settings.EXTRACTION_KEYS and cache_options is settings.cache_options
    assert parse_pooling("grid3") == ("grid", 3)
