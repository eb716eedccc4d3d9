"""Data flows one way (sources -> poller -> snapshot -> frontends): checked on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "discobridge"

# Which of our modules each layer may import (prefix match on the dotted name after "discobridge.").
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "config": {"model"},  # names checked as DNS will normalise them
    "metrics": set(),
    "logs": set(),
    "aws": {"config", "metrics", "aws_budget", "aws_loop"},
    "aws_loop": set(),
    "aws_budget": set(),
    "aws_roles": {"aws"},
    "accounts": {"aws", "aws_loop", "aws_roles", "config", "metrics", "sources"},
    "readiness": set(),
    "loop_lag": set(),
    "memory": set(),
    "descriptors": set(),
    "snapshot_file": {"model"},
    "snapshot_s3": {"aws", "snapshot_file"},
    "snapshot_saver": {"snapshot_file", "store"},
    "sources": {"model", "config", "aws", "metrics", "sources"},
    "render": {"model", "render"},
    "snapshot": {"model", "render"},
    "store": {"model", "render", "snapshot", "readiness"},
    "poller": {"model", "store", "sources.base", "metrics"},
    "event_queue": {"aws"},
    "event_feed": {"aws", "event_queue", "metrics", "poller", "sources.base"},
    "frontends": {"snapshot", "store", "model", "metrics", "render", "config", "frontends"},
}


def internal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "discobridge":
            found.update(a.name for a in node.names if a.name != "__version__")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("discobridge."):
            found.add(node.module.removeprefix("discobridge."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("discobridge.") for a in node.names if a.name.startswith("discobridge."))
    return found


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return relative.parts[0]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_module_imports_only_its_allowed_layers(path: Path) -> None:
    allowed = ALLOWED[layer_of(path)]
    for module in internal_imports(path):
        assert any(module == a or module.startswith(a + ".") for a in allowed), (
            f"{path.relative_to(PACKAGE)} imports discobridge.{module}; its layer may import only {sorted(allowed)}"
        )


def test_nothing_imports_the_composition_root_but_the_cli() -> None:
    importers = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "app" in internal_imports(p)}
    assert importers == {"cli.py"}


def test_frontends_and_renderers_never_import_aws_code() -> None:
    for path in PACKAGE.rglob("*.py"):
        if layer_of(path) in ("frontends", "render", "snapshot", "store"):
            text = path.read_text()
            assert "aiobotocore" not in text and "botocore" not in text, path
