"""The lock files pin every declared dependency, and a fresh venv installs the worker from them alone."""

from __future__ import annotations

import re
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.helpers import REPO

TOML = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS = {"runtime": [], "test": ["test"], "docs": ["test", "docs"], "bench": ["test", "bench"]}


@pytest.mark.parametrize("lock", [*EXTRAS, "build"])
def test_the_lock_pins_every_declared_dependency_within_its_range(lock: str) -> None:
    text = (REPO / "requirements" / f"{lock}.lock").read_text()
    pins = {canonicalize_name(n): v for n, v in re.findall(r"^([\w.-]+)==([^\s;\\]+)", text, re.M)}
    extras = TOML["project"]["optional-dependencies"]
    declared = [*TOML["project"]["dependencies"], *(r for e in EXTRAS.get(lock, []) for r in extras[e])]
    if lock == "build":
        declared = TOML["build-system"]["requires"]
    for req in map(Requirement, declared):
        version = pins.get(canonicalize_name(req.name))
        assert version and req.specifier.contains(version, prereleases=True), f"{req}: run make lock"


@pytest.mark.slow
def test_a_fresh_venv_installs_the_worker_from_the_locks_alone(tmp_path: Path) -> None:
    venv.create(tmp_path, with_pip=True)
    python, locks = str(tmp_path / "bin" / "python"), REPO / "requirements"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    for lock in ("build.lock", "runtime.lock"):
        subprocess.run([*pip, "--require-hashes", "-r", locks / lock], check=True)
    subprocess.run([*pip, "--no-build-isolation", REPO], check=True, cwd=tmp_path)
    subprocess.run([python, "-m", "pip", "check"], check=True)
    subprocess.run([python, "-c", "import pipeline, faust, aiokafka, pyarrow"], check=True, cwd=tmp_path)
