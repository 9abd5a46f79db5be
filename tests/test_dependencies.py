"""The declared lower bounds of the web stack are past its known denial-of-service advisories,
and what is installed satisfies them."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
#: The first version without the advisories (see the comment in pyproject.toml).
FIXED = {
    "python-multipart": "0.0.31",  # CVE-2024-53981, GHSA-pp6c-gr5w-3c5g, GHSA-v9pg-7xvm-68hf
    "starlette": "1.5.1",  # CVE-2024-47874, CVE-2025-54121, CVE-2025-62727, CVE-2026-54283
    "fastapi": "0.115.3",  # older releases pin a vulnerable starlette
}


def _lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return max(bounds) if bounds else None


def test_web_stack_bounds_exclude_vulnerable_releases() -> None:
    declared = {
        Requirement(line).name: Requirement(line)
        for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    }
    for name, fixed in FIXED.items():
        assert name in declared, f"{name} must be a direct dependency with a lower bound"
        bound = _lower_bound(declared[name])
        assert bound is not None and bound >= Version(fixed), f"{name}: {declared[name]}"
        installed = version(name)
        assert declared[name].specifier.contains(installed), f"{name} {installed} installed"
