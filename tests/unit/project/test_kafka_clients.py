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


def violations(source: str, name: str, builder: bool = False) -> list[str]:
    """Each client built outside the builder, and each Faust app without the builder's credentials."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        called = _called_name(node)
        if called in CLIENTS and not builder:
            found.append(f"{name}:{node.lineno} builds {called} itself: use KafkaConnection.{called}")
        is_app = (
            isinstance(node.func, ast.Attribute) and called == "App" and ast.unparse(node.func) == "faust.App"
        )
        if (is_app or (isinstance(node.func, ast.Name) and called == "App")) and not _faust_credentials(node):
            found.append(
                f"{name}:{node.lineno} builds a Faust app without broker_credentials=...faust_credentials()"
            )
    return found


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
