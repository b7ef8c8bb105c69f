"""CDR files as messages: how ``cdrpipe publish`` splits each format's files into one CDR each.

Contract: :func:`messages` yields the payloads of ``paths`` in file order:
one per non-empty line for line formats (Asterisk ``Master.csv``, JSON lines,
mapped CSV, whose header line is skipped when the mapping declares one), one
per ``*.json`` file for FreeSWITCH (a directory is read in name order).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.formats import asterisk_csv, canonical_json, freeswitch_json
from pipeline.formats.mapped_csv import PREFIX, CsvMapping


def files_of(format_name: str, paths: Iterable[Path]) -> list[Path]:
    """The files to read for ``paths`` (directories expand to their ``*.json`` files for FreeSWITCH)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            if format_name != freeswitch_json.NAME:
                raise ConfigError(f"{path} is a directory; only freeswitch-json reads directories")
            files.extend(sorted(path.glob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path} does not exist")
    return files


def messages(format_name: str, files: Iterable[Path], mappings: Mapping[str, CsvMapping]) -> Iterator[bytes]:
    """One payload per CDR in ``files``."""
    if format_name == freeswitch_json.NAME:
        for path in files:
            yield path.read_bytes()
        return
    skip_header = False
    if format_name.startswith(PREFIX):
        if format_name not in mappings:
            raise ConfigError(f"no mapping {format_name} in CDRPIPE_MAPPINGS; known: {sorted(mappings)}")
        skip_header = mappings[format_name].header
    elif format_name not in (asterisk_csv.NAME, canonical_json.NAME):
        raise ConfigError(f"unknown format {format_name}")
    for path in files:
        with path.open("rb") as handle:
            if skip_header:
                handle.readline()
            for line in handle:
                payload = line.rstrip(b"\r\n")
                if payload.strip():
                    yield payload
