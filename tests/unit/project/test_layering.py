"""The packages of pipeline/ follow the data flow: no module imports a later stage, so no cycle exists."""

from __future__ import annotations

import ast

from tests.support.helpers import REPO

PIPELINE = REPO / "pipeline"
LAYERS = [
    "core",
    "numbers",
    "keys",
    "observability",
    "config",
    "formats",
    "store",
    "sink",
    "ingest",
    "lifecycle",
    "compaction",
    "kafka",
    "worker",
    "cli",
]
"""Earlier layers never import later ones. ``core`` is the top-level ``record`` and ``errors``. The
store comes before the sink (the publish protocol writes through it), and the sink before ingest:
it defines the batch it accepts (``sink.batch``), which the ingest stage builds. Compaction comes
after the lifecycle (it applies the ledger and writes audit entries); the coverage it records,
which the publisher reads, is part of the store."""
TOP_LEVEL = {"record": "core", "errors": "core", "__init__": "core", "app": "worker", "__main__": "cli"}
"""The only modules outside a package: the record and the errors every stage shares, the package's
face, the documented Faust entry point (``faust -A pipeline.app worker``) and ``python -m pipeline``."""


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (PIPELINE / parts[1]).is_dir():
        return parts[1]
    return TOP_LEVEL[parts[1] if len(parts) > 1 else "__init__"]


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


def test_pipeline_holds_only_packages_and_the_shared_modules() -> None:
    loose = {path.stem for path in PIPELINE.glob("*.py")}
    assert loose == set(TOP_LEVEL)


def test_every_package_is_a_known_stage() -> None:
    packages = {path.name for path in PIPELINE.iterdir() if (path / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"core"}


def test_every_package_says_what_it_owns() -> None:
    silent = [
        str(init.relative_to(REPO))
        for init in sorted(PIPELINE.rglob("__init__.py"))
        if len(ast.get_docstring(ast.parse(init.read_text())) or "") < 40
    ]
    assert silent == []


LIFECYCLE_FOUNDATIONS = {"ledger", "rows", "subject"}
"""The lifecycle root's shared parts; the rest of its root are the request processors."""


def _lifecycle_room(module: str) -> str:
    parts = module.split(".")
    if parts[2] in ("requests", "operations"):
        return parts[2]
    return "foundations" if parts[2] in LIFECYCLE_FOUNDATIONS else "processors"


def test_lifecycle_rooms_import_downward_only() -> None:
    rooms = ["requests", "foundations", "operations", "processors"]
    upward = [
        f"{source} ({_lifecycle_room(source)}) imports {target} ({_lifecycle_room(target)})"
        for source, target in _imports()
        if source.startswith("pipeline.lifecycle.")
        and target.startswith("pipeline.lifecycle.")
        and rooms.index(_lifecycle_room(target)) > rooms.index(_lifecycle_room(source))
    ]
    assert upward == []
