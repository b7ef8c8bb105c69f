"""The data dictionary (``schemas/data-dictionary.json``) rendered as Markdown for people.

Contract: :func:`render_markdown` is a pure function of the JSON document:
the pseudonym scheme and its version, one table of every stored column (type,
nullable, policy, text policy, pseudonym domain, sensitivity, description),
one table of the text policies and one table per input format of what
happens to each input field. ``docs/data-dictionary.md`` is its output for the shipped
dictionary (``python -m docs.data_dictionary > docs/data-dictionary.md``
in a checkout), kept in step by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DICTIONARY = Path(__file__).resolve().parent.parent / "schemas" / "data-dictionary.json"


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(document: dict[str, Any]) -> str:
    """Markdown for the data dictionary ``document``."""
    lines = [
        f"# {document['title']}",
        "",
        "<!-- Generated from schemas/data-dictionary.json by"
        " `python -m docs.data_dictionary`; do not edit. -->",
        "",
        document["description"],
        "",
        f"## Pseudonym scheme {document['pseudonym_scheme_version']}",
        "",
        document["pseudonym_scheme"],
        "",
        "## Stored columns",
        "",
        "| column | type | nullable | policy | text policy | pseudonym domain | sensitivity | description |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for column in document["columns"]:
        cells = [
            f"`{column['name']}`",
            f"`{column['type']}`",
            "yes" if column["nullable"] else "no",
            column["policy"],
            column["text_policy"],
            column.get("pseudonym_domain", ""),
            column["sensitivity"],
            column["description"],
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines += ["", "## Text policies", "", "| text policy | rule |", "| --- | --- |"]
    lines += [f"| {_cell(name)} | {_cell(rule)} |" for name, rule in document["text_policies"].items()]
    lines += ["", "## Input fields by format", ""]
    for format_name, fields in document["input_fields"].items():
        lines += [f"### {format_name}", "", "| input field | what happens to it |", "| --- | --- |"]
        lines += [f"| {_cell(field)} | {_cell(policy)} |" for field, policy in fields.items()]
        lines.append("")
    return "\n".join(lines)


def render_shipped() -> str:
    """The Markdown of the data dictionary shipped in ``schemas/``."""
    return render_markdown(json.loads(DICTIONARY.read_text()))


if __name__ == "__main__":
    print(render_shipped(), end="")
