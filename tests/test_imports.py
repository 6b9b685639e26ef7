"""The shape of the code: no library module imports an entry point, nothing but `main` is taken from an entry
point, and library modules have no import cycle.

An entry point is a module with `if __name__ == "__main__":` (`python -m <package>.<module>`); everything else
under common/, tools/ and phase*/ is a library. Libraries import only libraries, so a later phase (or a notebook) can use
a phase's models, data and loaders without pulling in its commands; entry points import libraries and, to chain
commands (demo, experiments, the roadmap smoke), other entry points' `main`. Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                  and (p.name in ("common", "tools") or p.name.startswith("phase")))


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = modules()


def is_entry_point(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)


def imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its body (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = name.split(".")[: -node.level] if not path.name == "__init__.py" else name.split(".")[: len(name.split(".")) - node.level + 1]
                base = ".".join([*pkg, base]) if base else ".".join(pkg)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


ENTRY = {m for m, p in MODULES.items() if is_entry_point(p)}
GRAPH = {m: imports(m, p) for m, p in MODULES.items()}


def test_the_walk_sees_the_entry_points():
    assert {"phase0_diffusion.train", "phase1_world_model.play", "phase3_vla.evaluate", "common.release"} <= ENTRY
    assert "phase1_world_model.model" not in ENTRY and "common.trainer" not in ENTRY


def test_no_library_module_imports_an_entry_point():
    bad = sorted(f"{m} imports {t}" for m in MODULES if m not in ENTRY for t in GRAPH[m] if t in ENTRY)
    assert not bad, "library modules importing entry points:\n  " + "\n  ".join(bad)


def test_library_modules_have_no_import_cycle():
    lib = {m: {t for t in GRAPH[m] if t not in ENTRY and not MODULES[t].name == "__init__.py"}
           for m in MODULES if m not in ENTRY}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(lib.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(lib):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles among library modules:\n  " + "\n  ".join(cycles)


def names_taken_from_entry_points(name: str, path: Path) -> set[str]:
    """`E.x` for every name x other than `main` that module `name` takes from an entry point E: `from E import x`,
    or `E.x` after `from pkg import E [as a]` / `import pkg.E as a`."""
    taken, alias = set(), {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ENTRY:
            taken |= {f"{node.module}.{a.name}" for a in node.names if a.name != "main"}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in ENTRY:
                    alias[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ENTRY and a.asname:
                    alias[a.asname] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in alias \
                and node.attr != "main":
            taken.add(f"{alias[node.value.id]}.{node.attr}")
    return taken


def test_entry_points_are_used_only_through_main():
    bad = sorted(f"{m} uses {t}" for m, p in MODULES.items() for t in names_taken_from_entry_points(m, p))
    assert not bad, "library code living in entry points (move it to a library module):\n  " + "\n  ".join(bad)
