"""The server kinds are one registry (`core.protocols.SERVER_KINDS`, issue 34): the modules that read it are the
ones listed here, no other module lists kinds of its own, the README's table says what the registry says, and
no module outside `collect/backends/` names a backend class."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import pytest

from latencylab.collect.backends import Backend, backend_class, make_backend
from latencylab.core import protocols
from latencylab.core.errors import StudyError
from latencylab.core.protocols import SERVER_KINDS, Capabilities, capabilities, server_kind
from latencylab.plan.study import parse_study

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "lib" / "latencylab"
REGISTRY = "latencylab.core.protocols"
# What a module reads the registry by: the registry and the functions that answer from it (`full_name`, in the
# same module, is Ollama's naming, no registry).
READS = {"SERVER_KINDS", "ServerKind", "server_kind", "capabilities", "unloads_idle"}
# The modules that read the registry, and what for. A new reader is a conscious change: add it here.
READERS = {
    "latencylab.plan.study": "validation: the kinds a study may name, which load, which need a base_url",
    "latencylab.plan.check": "the check's rules: the resident-model bound, the idle unload",
    "latencylab.collect.backends": "make_backend: the class each kind names",
    "latencylab.collect.backends.base": "a backend's capabilities, by its protocol's kind",
    "latencylab.collect.preflight": "the health path, and which kinds latencylab starts itself",
    "latencylab.collect.gather": "the evidence: which servers can be asked about a pull",
}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _reads_registry(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == REGISTRY and {a.name for a in node.names} & READS:
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "latencylab.core" and \
                any(a.name == "protocols" for a in node.names):
            return True
    return False


def test_the_modules_that_read_the_registry_are_the_ones_listed():
    readers = {name for name, tree in _modules().items() if name != REGISTRY and _reads_registry(tree)}
    assert readers == set(READERS)


def test_no_other_module_lists_server_kinds_of_its_own():
    """A Literal, tuple, list, set or dict of two kinds or more is a second list of them: read the registry."""
    kinds = set(SERVER_KINDS)
    lists = []
    for name, tree in _modules().items():
        if name == REGISTRY:
            continue
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else \
                node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else []
            named = {i.value for i in items if isinstance(i, ast.Constant) and i.value in kinds}
            if len(named) >= 2:
                lists.append(f"{name}:{node.lineno} {sorted(named)}")
    assert lists == []


def test_no_module_outside_the_backends_names_a_backend_class():
    classes = {backend_class(kind).__name__ for kind in SERVER_KINDS}
    named = []
    for name, tree in _modules().items():
        if name.startswith("latencylab.collect.backends"):
            continue
        for node in ast.walk(tree):
            used = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            imported = {a.name for a in node.names} if isinstance(node, ast.ImportFrom | ast.Import) else set()
            if used in classes or imported & classes:
                named.append(f"{name}:{node.lineno}")
    assert named == []


def test_each_kind_s_backend_speaks_with_the_kind_s_capabilities():
    for kind, entry in SERVER_KINDS.items():
        cls = backend_class(kind)
        assert issubclass(cls, Backend) and cls.kind in SERVER_KINDS
        backend = make_backend(kind, "http://127.0.0.1:1")
        assert backend.capabilities == entry.capabilities == capabilities(kind), kind
    # the embedded engine is a llama-server: its samples say the protocol they were spoken in
    assert make_backend("embedded", "http://127.0.0.1:1").kind == "llamacpp"


def test_an_unknown_kind_names_the_kinds_there_are():
    message = f"unknown backend 'tgi'; expected one of {', '.join(SERVER_KINDS)}"
    for ask in (server_kind, capabilities, lambda kind: make_backend(kind, "http://h:1")):
        with pytest.raises(ValueError, match=re.escape(message)):
            ask("tgi")


def test_a_study_names_the_registry_s_kinds_and_no_other():
    for kind, entry in SERVER_KINDS.items():
        study = {"name": "s", "backend": kind, "scenarios": [{"name": "a", "model": "m"}]}
        assert parse_study(study if entry.started else {**study, "base_url": "http://h:1"}).backend == kind
    *some, last = (f"'{k}'" for k in SERVER_KINDS)
    with pytest.raises(StudyError, match=re.escape(f"backend: Input should be {', '.join(some)} or {last}")):
        parse_study({"name": "s", "backend": "tgi", "scenarios": [{"name": "a", "model": "m"}]})


def test_the_readme_s_table_of_server_kinds_is_the_registry():
    readme = (ROOT / "README.md").read_text()
    columns = [f.name for f in fields(Capabilities)]
    header = "| `backend` | what it is | " + " | ".join(f"`{c}`" for c in columns) + " |"
    assert header in readme, "the README's table of server kinds has a column per capability"
    rows = readme.split(header, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]  # after the |---| line
    assert rows == [f"| `{kind}` | {entry.about} | "
                    + " | ".join("yes" if getattr(entry.capabilities, c) else "no" for c in columns) + " |"
                    for kind, entry in SERVER_KINDS.items()]
    # the study example's comment lists them too
    assert f"backend: ollama                 # {' | '.join(SERVER_KINDS)}\n" in readme
    assert protocols.__doc__ and "test_server_kinds.py" in protocols.__doc__
