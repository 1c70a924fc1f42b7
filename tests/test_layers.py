"""The layers point one way: routers → web → services → models/schemas → database → config,
under the two entry points (main.py, the app; cli.py, the command line), and the domain
(services) knows nothing of HTTP or of the command line."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTTP_PACKAGES = {"fastapi", "starlette"}
CLI_PACKAGES = {"typer", "click"}
ENTRY_POINTS = {"main", "cli"}
# Each layer, and the project modules or packages it must never import.
FORBIDDEN = {
    "routers": {"cli"},
    "services": {"routers", "web"} | ENTRY_POINTS | HTTP_PACKAGES | CLI_PACKAGES,
    "web": {"routers"} | ENTRY_POINTS,
    "models.py": {"services", "web", "routers", "schemas"} | ENTRY_POINTS,
    "schemas.py": {"services", "web", "routers"} | ENTRY_POINTS,
    "database.py": {"services", "web", "routers", "models", "schemas"} | ENTRY_POINTS,
    "config.py": {"services", "web", "routers", "models", "schemas", "database"} | ENTRY_POINTS,
    "main.py": {"cli"},
}


def imported_roots(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, anywhere in the file."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def layer_files(layer: str) -> list[Path]:
    target = ROOT / layer
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    files = layer_files(layer)
    assert files, f"no Python files in {layer}"
    violations = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[layer])
        for path in files
    }
    assert {name: found for name, found in violations.items() if found} == {}


def test_the_check_sees_an_http_import(tmp_path: Path) -> None:
    """The scanner itself must notice an import nested inside a function."""
    module = tmp_path / "sneaky.py"
    module.write_text("def f():\n    from starlette.requests import Request\n    return Request\n")
    assert "starlette" in imported_roots(module)
