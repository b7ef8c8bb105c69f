"""Documents that must match the code: JSON Schemas, data dictionary, compose file, Dockerfile."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import jsonschema
import msgspec
import yaml

from pipeline import demo
from pipeline.keyring import init_keyring
from pipeline.lifecycle.erasure import ErasureRequest
from pipeline.sink.schema import CDR_SCHEMA
from tests.helpers import REPO
from tests.samples import canonical

SCHEMAS = REPO / "schemas"


def _load(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def test_canonical_samples_and_demo_traffic_validate_against_the_cdr_schema() -> None:
    schema = _load("cdr.schema.json")
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    validator.validate(canonical())
    for cdr in demo.generate(200, seed=3):
        validator.validate(json.loads(demo.encode(cdr)))
    assert not validator.is_valid(canonical(direction="sideways"))
    assert not validator.is_valid(canonical(caller=None))


def test_a_created_keyring_validates_against_its_schema(tmp_path) -> None:
    path = tmp_path / "keyring.json"
    init_keyring(path)
    jsonschema.validate(json.loads(path.read_text()), _load("keyring.schema.json"))


def test_data_dictionary_lists_every_stored_column_with_its_type_and_policy() -> None:
    dictionary = _load("data-dictionary.json")["columns"]
    documented = {column["name"]: column for column in dictionary}
    assert set(documented) == {*CDR_SCHEMA.names, "call_date"}
    for field in CDR_SCHEMA:
        assert documented[field.name]["type"] == str(field.type)
        assert documented[field.name]["policy"] in {"keep", "pseudonymise", "generalise", "derived"}
        assert documented[field.name]["sensitivity"]
    for name in ("caller_pseudonym", "callee_pseudonym", "agent_pseudonym", "connected_pseudonym"):
        assert documented[name]["policy"] == "pseudonymise"


def test_compose_file_uses_pinned_official_kafka_in_kraft_mode_and_a_keyring_secret() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    images = [service["image"] for service in services.values() if "image" in service]
    assert all(":" in image and not image.endswith(":latest") for image in images)
    worker = services["worker"]
    assert worker["environment"]["CDRPIPE_KEYRING"].startswith("/run/secrets/")
    assert compose["secrets"]["cdrpipe_keyring"]["file"].startswith("./secrets/")
    assert (REPO / worker["build"]["dockerfile"]).exists()
    assert "container_name" not in worker, "a fixed container name prevents --scale"


def test_dockerfile_runs_as_non_root_with_a_pinned_base_and_no_secret() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"[\w./-]+:\d[\w.-]*", base.group(1))
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    copies = re.findall(r"^(?:COPY|ADD) .*$", dockerfile, re.MULTILINE)
    assert copies and not any("secret" in line or "keyring" in line for line in copies)
    assert "data/" not in " ".join(copies)


def test_erasure_requests_as_the_cli_sends_them_match_their_schema() -> None:
    request = ErasureRequest(request_id="r1", subject="0475 12 34 56", requested_at=datetime.now(UTC))
    jsonschema.validate(
        json.loads(msgspec.json.encode(request)),
        _load("erasure-request.schema.json"),
        format_checker=jsonschema.FormatChecker(),
    )
