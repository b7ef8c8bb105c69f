"""The packages of pipeline/ follow the data flow: no module imports a later stage, so no cycle exists."""

from __future__ import annotations

import ast

from tests.helpers import REPO

PIPELINE = REPO / "pipeline"
LAYERS = ["core", "formats", "sink", "ingest", "lifecycle", "kafka", "glue", "cli"]
"""Earlier layers never import later ones. The sink comes before ingest: it defines the batch
it accepts (``sink.batch``), which the ingest stage builds, and never looks back at ingest."""
TOP_LEVEL = {
    "app": "glue",
    "assembly": "glue",
    "lifecycle_agents": "glue",
    "worker_context": "glue",
    "file_source": "glue",
    "demo": "glue",
    "__main__": "cli",
}
"""Top-level modules that assemble the stages (the Faust app and its helpers) or start the CLI;
every other top-level module is core (records, numbers, pseudonyms, keys, settings, logs, metrics)."""


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (PIPELINE / parts[1]).is_dir():
        return parts[1]
    return TOP_LEVEL.get(parts[1] if len(parts) > 1 else "__init__", "core")


def _imports() -> list[tuple[str, str]]:
    edges = []
    for path in sorted(PIPELINE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline."):
                edges.append((module, node.module))
            elif isinstance(node, ast.Import):
                edges.extend(
                    (module, alias.name) for alias in node.names if alias.name.startswith("pipeline.")
                )
    return edges


def test_no_module_imports_a_later_stage() -> None:
    upward = [
        f"{source} ({_layer(source)}) imports {target} ({_layer(target)})"
        for source, target in _imports()
        if LAYERS.index(_layer(target)) > LAYERS.index(_layer(source))
    ]
    assert upward == []


def test_every_package_is_a_known_stage() -> None:
    packages = {path.name for path in PIPELINE.iterdir() if (path / "__init__.py").exists()}
    assert packages <= set(LAYERS)


def test_no_module_is_much_longer_than_250_lines() -> None:
    long = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines()) for path in PIPELINE.rglob("*.py")
    }
    assert {path: lines for path, lines in long.items() if lines > 260} == {}


def test_the_readme_lists_every_module() -> None:
    layout = (REPO / "README.md").read_text().split("## Project layout", 1)[1]
    missing = [
        str(path.relative_to(REPO))
        for path in sorted(PIPELINE.rglob("*.py"))
        if str(path.relative_to(REPO)) not in layout
    ]
    assert missing == []
