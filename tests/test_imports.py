"""The package's import structure, read from the source with `ast` (nothing is imported):
no import cycle among its modules at import time, and no module takes a private
(underscore) name from another subpackage."""

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "byot_keras"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def top_level_imports(tree: ast.Module):
    """The import statements that run when the module is imported: those at module
    level, also inside module-level `if` / `try` blocks, not inside functions or classes."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try):
            pending.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)


def imported(name: str, node: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name taken from it or None) pairs of one import statement of `name`."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        package = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        base = f"{package}.{base}" if base else package
    pairs = []
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:  # a submodule, not a name of the package
            pairs.append((f"{base}.{alias.name}", None))
        else:
            pairs.append((base, alias.name))
    return pairs


@functools.cache
def import_graph():
    """Module -> the package modules it imports at import time; and every private name
    taken across subpackages, as (importer, module, name)."""
    graph, private = {}, []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = set()
        for node in top_level_imports(tree):
            for module, _ in imported(name, node):
                if module in MODULES and module != name:
                    edges.add(module)
        for node in ast.walk(tree):  # a private name is wrong wherever it is imported
            if isinstance(node, ast.ImportFrom | ast.Import):
                for module, taken in imported(name, node):
                    if module.startswith("byot_keras") and taken and taken.startswith("_") \
                            and subpackage(module) != subpackage(name):
                        private.append((name, module, taken))
        graph[name] = edges
    return graph, private


def subpackage(module: str) -> str:
    """`byot_keras.export` for byot_keras.export.tflite; the module itself for the
    top-level modules (byot_keras.folders) and the package."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return module


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_is_read_from_every_module():
    graph, _ = import_graph()
    assert "byot_keras.export.tflite" in graph and "byot_keras.networks.structure" in graph
    # A known edge, so that an empty graph cannot pass the checks below.
    assert "byot_keras.export.files" in graph["byot_keras.export.tflite"]


def test_no_import_cycle():
    graph, _ = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_a_private_name_of_another_subpackage():
    _, private = import_graph()
    assert private == []
