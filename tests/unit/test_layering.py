"""models/ is the pure core: it never imports I/O frameworks (STYLE.md principle 1)."""

import ast
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
BANNED = {"faust", "aiokafka", "kafka", "prometheus_client", "mode", "aiohttp", "streams"}


@pytest.mark.parametrize("path", sorted(MODELS.rglob("*.py")), ids=lambda p: p.name)
def test_models_import_no_io_framework(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & BANNED, f"{path.name} imports {sorted(imported & BANNED)}"
