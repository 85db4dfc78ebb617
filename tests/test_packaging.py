"""The package metadata: one version, the licence, the typing markers, the changelog."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.version import Version

import octoproto

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    pyproject: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject


def test_the_version_has_one_source() -> None:
    pyproject = _pyproject()
    project = pyproject["project"]
    assert isinstance(project, dict)
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]  # type: ignore[index]
    assert dynamic["version"] == {"attr": "octoproto.__version__"}


def test_the_installed_metadata_agrees_with_the_package() -> None:
    Version(octoproto.__version__)  # PEP 440
    installed = importlib.metadata.version("octoproto")
    assert installed == octoproto.__version__, "reinstall: pip install -e ."


def test_licence_and_typing_markers_ship() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]  # type: ignore[index]
    for package, folder in (("octoproto", "octoproto"), ("octoproto.adapters", "adapters")):
        assert (ROOT / folder / "py.typed").is_file()
        assert "py.typed" in package_data[package]


def test_the_changelog_has_an_unreleased_section() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in changelog
    assert re.search(r"^## \[Unreleased\]$", changelog, re.M)
