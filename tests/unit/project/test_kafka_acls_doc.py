"""The ACLs docs/kafka-security.md lists per principal are the ACLs the secured local broker grants."""

from __future__ import annotations

import re

from tests.support.helpers import REPO

PRINCIPALS = {"worker": "worker", "DPO's CLI": "dpo", "CDR producer": "producer"}
APP_ID, TOPIC_PREFIX = "cdrpipe", "cdr."

Acl = tuple[str, str, str, str]
"""principal, resource type, resource name, operation."""


def documented() -> set[Acl]:
    text = (REPO / "docs" / "kafka-security.md").read_text()
    section = text.split("## Least privilege", 1)[1].split("\n## ", 1)[0]
    acls: set[Acl] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] not in PRINCIPALS:
            continue
        kind = "group" if cells[1].startswith("groups") else "topic"
        names = [name.replace("<app id>", APP_ID) for name in re.findall(r"`([^`]+)`", cells[1])]
        for name in names:
            for operation in cells[2].split(", "):
                acls.add((PRINCIPALS[cells[0]], kind, name, operation))
    return acls


def granted() -> set[Acl]:
    script = (REPO / "deploy" / "kafka-local").read_text()
    table = script.split("acl_table() {\n    cat <<EOF\n", 1)[1].split("\nEOF", 1)[0]
    acls: set[Acl] = set()
    for line in table.splitlines():
        principal, kind, _pattern, names, operations = line.split()
        for name in (
            names.replace("${topic_prefix}", TOPIC_PREFIX).replace("${app_prefix}", APP_ID).split(",")
        ):
            for operation in operations.split(","):
                acls.add((principal, kind, name, operation))
    return acls


def test_the_documented_acls_are_the_local_brokers() -> None:
    assert documented() == granted()
    assert {principal for principal, *_ in documented()} == set(PRINCIPALS.values())


def test_the_dpo_holds_no_create_no_group_and_no_raw_topic() -> None:
    dpo = {acl for acl in documented() if acl[0] == "dpo"}
    assert not any(operation == "Create" for *_, operation in dpo)
    assert {kind for _, kind, _, _ in dpo} == {"topic"}
    assert all("raw" not in name and "ledger" not in name for _, _, name, _ in dpo)
