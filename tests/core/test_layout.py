"""The layout rule, enforced: package = capability, imports point one way.

    lib.core  <-  capability packages (chat, billing, keys, meetings, usage)  <-  lib.cli
    lib.local (embedded Postgres, migrations, fakes, dev stack) is an outer ring like the CLI:
      it may import lib.core and capability packages (a fake signs as billing verifies),
      never lib.cli or functions/, and nothing but lib.cli imports it
    functions/ imports lib.core and capability packages, never lib.local or lib.cli
    nothing in lib imports functions/, tests/ or bench/, except lib.cli (the composition root)
    bench/ imports nothing from tests/

Imports are read with `ast` (module-level and function-level alike), so a lazy import
cannot hide an upward edge. Every violation is reported naming its edge.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPABILITIES = ("chat", "billing", "keys", "meetings", "usage")
PACKAGES = ("core", *CAPABILITIES, "local", "cli")
SCANNED = ("lib", "functions", "api", "bench")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (or the package a name is imported from)
    where: str  # file:line


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> list[Edge]:
    source = module_name(root, path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            edges += [Edge(source, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from lib.cli import local` names a module when lib/cli/local.py exists
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                is_module = any((root / Path(*candidate.split("."))).with_suffix(s).exists() for s in (".py",)) \
                    or (root / Path(*candidate.split(".")) / "__init__.py").exists()
                edges.append(Edge(source, candidate if is_module else module, where))
    return edges


def layer(module: str) -> str | None:
    """The layer a first-party module belongs to, or None for third-party modules."""
    parts = module.split(".")
    if parts[0] == "lib":
        return f"lib.{parts[1]}" if len(parts) > 1 else "lib"
    if parts[0] in ("functions", "api", "bench", "tests"):
        return parts[0]
    return None


def allowed(source: str, target: str) -> bool:
    if source == target:
        return True
    if source == "lib.cli":
        return target.startswith("lib") or target == "functions"
    if source == "lib.core" or source == "lib":
        return False
    if source in (f"lib.{c}" for c in CAPABILITIES):
        return target == "lib.core"
    if source == "lib.local":
        return target == "lib.core" or target in (f"lib.{c}" for c in CAPABILITIES)
    if source == "functions":
        return target == "lib.core" or target in (f"lib.{c}" for c in CAPABILITIES)
    if source == "api":
        return target == "functions"
    if source == "bench":
        return target.startswith("lib") or target == "functions"
    return False


def all_edges(root: Path) -> list[Edge]:
    return [e for d in SCANNED if (root / d).is_dir() for p in sorted((root / d).rglob("*.py"))
            for e in imports_of(root, p)]


def upward_edges(root: Path) -> list[str]:
    bad = []
    for e in all_edges(root):
        src, dst = layer(e.source), layer(e.target)
        if src is not None and dst is not None and not allowed(src, dst):
            bad.append(f"{e.where}: {e.source} imports {e.target} ({src} may not import {dst})")
    return sorted(set(bad))


def cycles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    modules = {module_name(root, p) for d in SCANNED if (root / d).is_dir() for p in (root / d).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in all_edges(root):
        if e.target in modules and e.target != e.source:
            graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def loose_modules(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "lib").glob("*.py") if p.name != "__init__.py")


def unknown_packages(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "lib").iterdir()
                  if p.is_dir() and p.name != "__pycache__" and p.name not in PACKAGES)


# -- the project itself ---------------------------------------------------------------

def test_no_module_imports_upward():
    bad = upward_edges(ROOT)
    assert bad == [], "imports against the layout rule:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(ROOT)
    assert found == [], f"import cycles: {found}"


def test_lib_has_only_capability_packages():
    assert loose_modules(ROOT) == [], "every module of lib/ belongs to a capability package"
    assert unknown_packages(ROOT) == [], f"lib/ packages must be one of {PACKAGES} (add it to DESIGN.md first)"


def test_every_capability_package_has_a_test_folder():
    missing = [p for p in PACKAGES if p != "cli" and (ROOT / "lib" / p).is_dir() and not (ROOT / "tests" / p).is_dir()]
    assert missing == [], f"packages without tests/<package>: {missing}"


# -- the checker can fail ----------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_names_an_upward_edge(tmp_path):
    root = _tree(tmp_path, {
        "lib/__init__.py": "", "lib/core/__init__.py": "", "lib/chat/__init__.py": "",
        "lib/core/server.py": "def f():\n    from functions import ROUTES\n",
        "lib/chat/proxy.py": "from lib.billing import api\n",
        "lib/billing/__init__.py": "", "lib/billing/api.py": "",
        "functions/__init__.py": "", "functions/chat.py": "from lib.local import embedded\n",
        "bench/x.py": "from tests.pg import Request\n",
    })
    bad = "\n".join(upward_edges(root))
    assert "lib/core/server.py:2: lib.core.server imports functions (lib.core may not import functions)" in bad
    assert "lib.chat.proxy imports lib.billing.api (lib.chat may not import lib.billing)" in bad
    assert "functions.chat imports lib.local (functions may not import lib.local)" in bad
    assert "bench.x imports tests.pg (bench may not import tests)" in bad


def test_checker_finds_a_cycle_and_loose_modules(tmp_path):
    root = _tree(tmp_path, {
        "lib/__init__.py": "", "lib/dev.py": "", "lib/cli/__init__.py": "from lib.cli import stripe\n",
        "lib/cli/stripe.py": "from lib.cli.local import x\n", "lib/cli/local.py": "from .stripe import y\n",
        "lib/widgets/__init__.py": "",
    })
    assert cycles(root) == [["lib.cli.local", "lib.cli.stripe"]]
    assert loose_modules(root) == ["dev.py"]
    assert unknown_packages(root) == ["widgets"]


def test_checker_keeps_lib_local_an_outer_ring(tmp_path):
    root = _tree(tmp_path, {
        "lib/__init__.py": "", "lib/local/__init__.py": "", "lib/billing/__init__.py": "",
        "lib/local/fake.py": "from lib.billing import signature\nfrom lib.cli import main\n",
        "lib/billing/events.py": "from lib.local import fake\n", "lib/billing/signature.py": "",
    })
    bad = "\n".join(upward_edges(root))
    assert "lib.local.fake imports lib.billing.signature" not in bad, "a fake may use what it fakes"
    assert "lib.local.fake imports lib.cli (lib.local may not import lib.cli)" in bad
    assert "lib.billing.events imports lib.local.fake (lib.billing may not import lib.local)" in bad
