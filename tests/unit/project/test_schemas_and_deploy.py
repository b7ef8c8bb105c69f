"""Documents that must match the code: JSON Schemas, data dictionary, compose file, Dockerfile."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema
import msgspec
import yaml

from docs.data_dictionary import render_shipped
from pipeline.cli import demo
from pipeline.formats.text_policy import POLICIES
from pipeline.keys.keyring import init_keyring
from pipeline.keys.pseudonym import PSEUDONYM_SCHEME_VERSION
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.store.schema import CDR_SCHEMA
from tests.support.helpers import REPO
from tests.support.lifecycle_store import KEYS
from tests.support.samples import canonical
from tests.support.signed import signed

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


def test_every_column_has_the_text_policy_the_code_enforces_and_the_scheme_version() -> None:
    document = _load("data-dictionary.json")
    assert document["pseudonym_scheme_version"] == PSEUDONYM_SCHEME_VERSION
    assert "tenant" in document["pseudonym_scheme"] and "Existing stores" in document["pseudonym_scheme"]
    rules = document["text_policies"]
    columns = {column["name"]: column for column in document["columns"]}
    assert {column["text_policy"] for column in columns.values()} == set(rules)
    for field, policy in POLICIES.items():
        assert columns[field]["text_policy"] == policy.name
        assert rules[policy.name].startswith(policy.describes)
    text_columns = {
        field.name
        for field in CDR_SCHEMA
        if str(field.type) in ("string", str(CDR_SCHEMA.field("queue").type))
    }
    for name in text_columns:
        assert columns[name]["text_policy"] != "not-text", name
    for name in set(columns) - text_columns:
        assert columns[name]["text_policy"] == "not-text", name
    enforced_elsewhere = {"enumeration", "pseudonym", "service-short-code"}
    assert {columns[name]["text_policy"] for name in text_columns} - enforced_elsewhere == {
        policy.name for policy in POLICIES.values()
    }


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
    assert "ports" not in worker, "published ports prevent --scale"


def test_compose_writes_to_minio_and_prometheus_scrapes_every_worker() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert "mc mb --ignore-existing store/cdrpipe" in services["minio-init"]["entrypoint"]
    worker = services["worker"]
    bucket = worker["environment"]["CDRPIPE_STORE"].removeprefix("s3://").split("/")[0]
    assert bucket == "cdrpipe"
    assert worker["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert worker["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert "/health" in " ".join(worker["healthcheck"]["test"])
    prometheus = services["prometheus"]
    mounted = prometheus["volumes"][0].split(":")[0]
    config = yaml.safe_load((REPO / mounted).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [{"names": ["worker"], "type": "A", "port": 6066}]


def test_kubernetes_manifests_run_several_non_root_replicas_with_the_keyring_from_a_secret() -> None:
    documents = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "cdrpipe.yaml").read_text()))
    kinds = {document["kind"]: document for document in documents}
    assert set(kinds) == {"ServiceAccount", "Deployment", "Service", "NetworkPolicy"}
    deployment = kinds["Deployment"]["spec"]
    assert deployment["replicas"] >= 2
    pod = deployment["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    (worker,) = pod["containers"]
    environment = {variable["name"]: variable.get("value") for variable in worker["env"]}
    # the keyring sits in a directory the init container creates (0755, the worker's own): the
    # memory-backed emptyDir itself is world-writable, a directory the worker refuses
    keyring_dir = environment["CDRPIPE_KEYRING"].rsplit("/", 2)[0]
    mounts = {mount["name"]: mount["mountPath"] for mount in worker["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (copy,) = pod["initContainers"]
    assert (
        copy["command"][:4] == ["install", "-D", "-m", "0600"]
        and copy["command"][-1] == environment["CDRPIPE_KEYRING"]
    )
    assert (
        volumes[next(name for name, path in mounts.items() if path == keyring_dir)]["emptyDir"]["medium"]
        == "Memory"
    )
    secret_mount = next(
        mount for mount in copy["volumeMounts"] if copy["command"][4].startswith(mount["mountPath"])
    )
    assert volumes[secret_mount["name"]]["secret"]["secretName"] == "cdrpipe-keyring"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/health"
    assert ":" in worker["image"] and not worker["image"].endswith(":latest")
    # S3 credentials come from the service account's IAM role (IRSA / EKS Pod Identity), never static keys
    account = kinds["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    for container in [*pod["containers"], *pod["initContainers"]]:
        names = {variable["name"] for variable in container.get("env", [])}
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
        assert "envFrom" not in container
    service = kinds["Service"]
    assert service["spec"]["selector"] == deployment["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 6066


def _manifests() -> dict[str, dict[str, Any]]:
    documents = yaml.safe_load_all((REPO / "deploy" / "k8s" / "cdrpipe.yaml").read_text())
    return {document["kind"]: document for document in documents}


def test_kubernetes_kafka_secrets_are_files_from_a_secret_never_environment_values() -> None:
    kinds = _manifests()
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    environment = {variable["name"]: variable for variable in worker["env"]}
    assert all("valueFrom" not in variable for variable in environment.values()), (
        "a secret in the environment"
    )
    assert environment["CDRPIPE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    mounts = {mount["mountPath"]: mount for mount in worker["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for variable in ("CDRPIPE_KAFKA_SSL_CAFILE", "CDRPIPE_KAFKA_SASL_PASSWORD_FILE"):
        path = environment[variable]["value"]
        mount = mounts[path.rsplit("/", 1)[0]]
        assert mount["readOnly"] and volumes[mount["name"]]["secret"]["secretName"] == "cdrpipe-kafka", (
            variable
        )
    assert (
        environment["CDRPIPE_WEB_HOST"]["value"] == "0.0.0.0"
    )  # the probes and Prometheus come from outside
    assert int(environment["CDRPIPE_TOPIC_REPLICATION"]["value"]) >= 3


def test_kubernetes_network_policy_lets_only_prometheus_and_the_probes_in() -> None:
    kinds = _manifests()
    policy = kinds["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == kinds["Deployment"]["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress"]
    (worker,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    web_port = next(port["containerPort"] for port in worker["ports"] if port["name"] == "metrics")
    assert all(rule["ports"] == [{"protocol": "TCP", "port": web_port}] for rule in policy["ingress"])
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    # The kubelet's probes come from the pod's own node, which a NetworkPolicy always lets in:
    # Prometheus is the only peer, and no address range is opened.
    (prometheus,) = sources
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert "namespaceSelector" in prometheus, "without it the rule means the worker's own namespace only"


def test_the_image_serves_the_probes_beyond_the_loopback() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert re.search(r"CDRPIPE_WEB_HOST=0\.0\.0\.0", dockerfile)


def test_dockerfile_runs_as_non_root_with_a_pinned_base_and_no_secret() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    pinned = r"[\w./-]+:\d[\w.-]*@sha256:[0-9a-f]{64}"  # a tag, and the digest that fixes it
    assert base and re.fullmatch(pinned, base.group(1))
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    copies = re.findall(r"^(?:COPY|ADD) .*$", dockerfile, re.MULTILINE)
    assert copies and not any("secret" in line or "keyring" in line for line in copies)
    assert "data/" not in " ".join(copies)


def test_erasure_requests_as_the_cli_sends_them_match_their_schema() -> None:
    request = ErasureRequest(request_id="r1", subject="0475 12 34 56", requested_at=datetime.now(UTC))
    validator = jsonschema.Draft202012Validator(
        _load("erasure-request.schema.json"), format_checker=jsonschema.FormatChecker()
    )
    validator.validate(json.loads(signed(request, KEYS)))
    assert not validator.is_valid(json.loads(msgspec.json.encode(request)))  # unsigned


def test_the_rendered_data_dictionary_is_up_to_date() -> None:
    rendered = (REPO / "docs" / "data-dictionary.md").read_text()
    assert rendered == render_shipped(), "run: python -m docs.data_dictionary > docs/data-dictionary.md"
    for field in CDR_SCHEMA:
        assert f"| `{field.name}` | `{field.type}` |" in rendered
