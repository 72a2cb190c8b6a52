"""The environment files never drift apart, and the CLI and profiles behave."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

import vitnb

ROOT = Path(__file__).resolve().parents[1]


def names(requirements) -> set[str]:
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_and_pyproject_name_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = names(project["dependencies"]) | names(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert names(p for p in pip_section if not p.startswith("-e")) == declared
    assert {"torch", "torchvision", "jupyterlab", "matplotlib", "ipywidgets", "nbval", "einops"} <= declared


def test_profiles():
    assert vitnb.get_profile("quick").name == "quick"
    with pytest.raises(ValueError, match="'quick' or 'full'"):
        vitnb.get_profile("medium")
    with pytest.raises(AttributeError, match="no setting 'nope'"):
        getattr(vitnb.get_profile("full"), "nope")  # noqa: B009 (the attribute access is the test)


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "vitnb", "--help"], capture_output=True, text=True, check=True)
    assert "fetch-data" in out.stdout
