"""Every broker client in pipeline/ goes through the connection builder: none connects without TLS or SASL."""

from __future__ import annotations

import ast

from tests.support.helpers import REPO

PIPELINE = REPO / "pipeline"
BUILDER = PIPELINE / "kafka" / "connection.py"
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient", "create_conn"}
"""The aiokafka classes and functions that open connections to a broker."""


def _called_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _faust_credentials(call: ast.Call) -> bool:
    """Whether the ``faust.App(...)`` call passes ``broker_credentials=<connection>.faust_credentials()``."""
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg == "broker_credentials" and isinstance(value, ast.Call):
            return _called_name(value) == "faust_credentials"
    return False


def _annotations(tree: ast.AST) -> set[int]:
    """The ids of every node inside a type annotation (a class named there builds nothing)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(inner) for root in roots for inner in ast.walk(root)}


def _faust_app_names(tree: ast.AST) -> set[str]:
    """The local names of ``faust.App``: ``App`` and any ``from faust import App as ...``."""
    names = {"App"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "faust":
            names |= {alias.asname for alias in node.names if alias.name == "App" and alias.asname}
    return names


def violations(source: str, name: str, builder: bool = False) -> list[str]:
    """Each client built (or reachable to be built) outside the builder, and each Faust app without
    the builder's credentials.

    Outside the builder an aiokafka client class or ``create_conn`` may only be named in a type
    annotation or imported under its own name: a call, an alias, a subclass, ``functools.partial``
    or ``getattr(aiokafka, "...")`` all count. ``faust.App`` may only be called, with
    ``broker_credentials=...faust_credentials()``.
    """
    tree = ast.parse(source)
    in_annotation, app_names = _annotations(tree), _faust_app_names(tree)
    app_calls = {
        id(node.func): _faust_credentials(node) for node in ast.walk(tree) if isinstance(node, ast.Call)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in in_annotation or not isinstance(node, ast.expr | ast.ImportFrom):
            continue
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname and alias.asname != alias.name and alias.name in CLIENTS and not builder:
                    found.append((node.lineno, f"imports {alias.name} as {alias.asname}: the scan loses it"))
            continue
        referred = (
            node.id
            if isinstance(node, ast.Name)
            else node.attr
            if isinstance(node, ast.Attribute)
            else node.value
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            else None
        )
        if referred in CLIENTS and not builder:
            found.append((node.lineno, f"builds {referred} itself: use KafkaConnection.{referred}"))
        is_app = (isinstance(node, ast.Attribute) and ast.unparse(node) == "faust.App") or (
            isinstance(node, ast.Name) and node.id in app_names
        )
        if is_app and not app_calls.get(id(node), False):
            found.append((node.lineno, "builds a Faust app without broker_credentials=faust_credentials()"))
    return [f"{name}:{line} {problem}" for line, problem in sorted(found)]


def test_every_client_in_the_package_goes_through_the_connection_builder() -> None:
    found = [
        problem
        for path in sorted(PIPELINE.rglob("*.py"))
        for problem in violations(path.read_text(), str(path.relative_to(REPO)), builder=path == BUILDER)
    ]
    assert found == []


def test_the_builder_builds_each_client() -> None:
    built = {
        _called_name(node) for node in ast.walk(ast.parse(BUILDER.read_text())) if isinstance(node, ast.Call)
    }
    assert {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "create_conn"} <= built


def test_the_scan_finds_a_client_built_any_other_way() -> None:
    source = """
import faust
from aiokafka import AIOKafkaConsumer
import aiokafka.admin
c = AIOKafkaConsumer("t", bootstrap_servers="b")
a = aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers="b")
app = faust.App("x", broker="kafka://b")
fine = faust.App("x", broker_credentials=connection.faust_credentials())
"""
    assert [problem.split(" ", 1)[0] for problem in violations(source, "m.py")] == [
        "m.py:5",
        "m.py:6",
        "m.py:7",
    ]


def test_the_scan_finds_a_client_built_indirectly() -> None:
    source = """
import functools
import aiokafka
import faust
from aiokafka import AIOKafkaProducer as Producer
from faust import App as FaustApp
producer = Producer(bootstrap_servers="b")
make = functools.partial(aiokafka.AIOKafkaConsumer, bootstrap_servers="b")
class Mine(aiokafka.AIOKafkaProducer): pass
by_name = getattr(aiokafka, "AIOKafkaAdminClient")(bootstrap_servers="b")
app = FaustApp("x", broker="kafka://b")
class MyApp(faust.App): pass
"""
    assert [problem.split(" ", 1)[0] for problem in violations(source, "m.py")] == [
        "m.py:5",
        "m.py:8",
        "m.py:9",
        "m.py:10",
        "m.py:11",
        "m.py:12",
    ]


def test_the_scan_leaves_type_annotations_alone() -> None:
    source = """
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
import faust
class Service:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._producer: AIOKafkaProducer | None = None
    def require(self) -> "AIOKafkaConsumer":
        return self._consumer
def create() -> faust.App:
    return faust.App("x", broker_credentials=connection.faust_credentials())
"""
    assert violations(source, "m.py") == []
