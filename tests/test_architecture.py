"""The shape of the package, checked from its source (ARCHITECTURE.md): layers that depend one way, no import
circles, one reader of the environment, and a small top level."""

import ast
import collections
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aipic"

# edges → pipeline → engine → domain → common; inside the domain, models is the base the others may use.
LAYERS = {
    "aipic.cli": 6, "aipic.__main__": 6, "aipic.web": 6,
    "aipic.pipeline": 5,
    "aipic.engine": 4,
    "aipic.generation": 3, "aipic.audit": 3, "aipic.provenance": 3,
    "aipic.models": 2,
    "aipic.common": 1,
    "aipic": 0,
}


def modules() -> dict:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(modules: dict) -> dict:
    """module → the aipic modules it imports, at any depth of the file (function-local imports count too)."""
    edges = collections.defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aipic"):
                submodules = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules]
                targets = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("aipic")]
            else:
                continue
            edges[name].update(target for target in targets if target in modules and target != name)
    return edges


def layer(module: str) -> tuple[int, str]:
    prefix = max((key for key in LAYERS if module == key or module.startswith(key + ".")), key=len)
    return LAYERS[prefix], prefix


def test_no_import_circles():
    edges = imports(modules())
    state: dict = {}
    path: list = []
    circles = []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                circles.append(" → ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(modules()):
        if node not in state:
            visit(node)
    assert circles == []


def test_imports_go_down_the_layers_only():
    upward = []
    for module, targets in imports(modules()).items():
        for target in targets:
            (low, low_package), (high, high_package) = layer(module), layer(target)
            if high > low or (high == low == LAYERS["aipic.audit"] and low_package != high_package):
                upward.append(f"{module} → {target}")
    assert upward == []


def test_the_engine_knows_no_domain():
    for module, targets in imports(modules()).items():
        if module.startswith("aipic.engine"):
            assert all(target.startswith(("aipic.engine", "aipic.common")) for target in targets), (module, targets)


def test_only_the_settings_read_the_environment():
    """The settings module reads it; the verifier hands its child processes the environment they run in."""
    readers = sorted(name for name, path in modules().items() if re.search(r"\benviron\b|\bgetenv\b", path.read_text()))
    assert readers == ["aipic.common.settings", "aipic.provenance.verify"]


def test_subprocess_entry_points_name_modules_that_exist():
    """Helper processes are started by module path (python -m …): each named module exists and can run as one."""
    named = set()
    for path in modules().values():
        named.update(re.findall(r'"-m", "(aipic(?:\.\w+)+)"', path.read_text()))
    assert named == {"aipic.provenance.verify", "aipic.provenance.trustmark"}
    found = modules()
    for module in named:
        assert module in found and 'if __name__ == "__main__":' in found[module].read_text(), module


def test_a_handful_of_modules_sit_at_the_top():
    assert sorted(path.name for path in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "cli.py"]
