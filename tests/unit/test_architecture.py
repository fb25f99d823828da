"""Machine checks of the house rules: the domain stays pure, the layers stay in order."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "voicecall"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    "module", sorted(SRC.joinpath("domain").rglob("*.py")), ids=lambda p: p.name
)
def test_domain_imports_only_stdlib_attrs_and_itself(module: Path) -> None:
    for name in _imports(module):
        top = name.split(".")[0]
        allowed = (
            top in sys.stdlib_module_names or top == "attrs" or name.startswith("voicecall.domain")
        )
        assert allowed, f"{module.name} imports {name}"


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [lint, "--no-cache"], cwd=SRC.parents[1], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_no_import_circles_in_the_package() -> None:
    """No module reaches itself through imports, lazy (in-function) imports included: the CLI,
    the demo and ``expose`` share the gateway client from its own module instead."""
    modules = {_module_name(path): path for path in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for imported in _imports(path):
            # "from voicecall.x import y" may name a module y or an attribute of x.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported.startswith("voicecall."):
                targets.add(imported)
        graph[name] = targets
    for start in graph:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                assert nxt != start, " -> ".join([*trail, nxt])
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
