"""The environment files never drift apart, the README's set-up installs everything the notebooks import, and the
package's lazy names match its modules."""

import ast
import functools
import importlib
import importlib.metadata as metadata
import json
import pkgutil
import re
import sys
from pathlib import Path

import tomllib
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement

import vitnb

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): 'PyYAML' and 'pyyaml', 'jupyter_core' and 'jupyter-core'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by(requirements: list[str]) -> set[str]:
    """Every distribution that installing `requirements` brings in, their own requirements included."""
    todo, found = [Requirement(r) for r in requirements], set()
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(req.name) or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(dep)
    return found


def imported_modules(source: str) -> set[str]:
    """Top-level modules a notebook cell imports (`import a.b` and `from a.b import c` give 'a')."""
    tree = ast.parse(TransformerManager().transform_cell(source))  # %magics and !shell lines become Python
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def notebook_imports(path: Path) -> set[str]:
    cells = json.loads(path.read_text())["cells"]
    return set().union(*(imported_modules("".join(c["source"])) for c in cells if c["cell_type"] == "code"))


@functools.cache
def distributions_by_module() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # {'PIL': ['pillow'], 'yaml': ['PyYAML'], ...}


def not_installed(modules: set[str], requirements: list[str]) -> set[str]:
    """The modules in `modules` that neither the standard library, vitnb, nor `requirements` provide."""
    provided = installed_by(requirements)
    by_module = distributions_by_module()
    return {
        m
        for m in modules
        if m not in sys.stdlib_module_names
        and m != "vitnb"
        and not {canonical(d) for d in by_module.get(m, [])} & provided
    }


def test_environment_yml_and_pyproject_list_the_same_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [p for p in pip_section if not p.startswith("-e")] == (
        PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]
    )
    assert "-e ." in pip_section


def test_every_notebook_import_is_installed_by_the_main_dependencies():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name[:3] for p in notebooks] == [f"{k:02d}_" for k in range(1, len(notebooks) + 1)]  # 01_, 02_, ...
    imports = set().union(*map(notebook_imports, notebooks))
    assert {"torch", "timm", "matplotlib", "IPython", "vitnb"} <= imports  # the parser sees the imports
    assert not_installed(imports, PROJECT["dependencies"]) == set()


def test_the_import_check_flags_dev_only_and_unknown_modules():
    source = "%matplotlib inline\nimport os, torch.nn as nn\nfrom pytest import approx\nimport vit_pytorch, nowhere_pkg"
    assert imported_modules(source) == {"os", "torch", "pytest", "vit_pytorch", "nowhere_pkg"}
    assert not_installed(imported_modules(source), PROJECT["dependencies"]) == {"pytest", "vit_pytorch", "nowhere_pkg"}
    all_requirements = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]
    assert not_installed(imported_modules(source), all_requirements) == {"nowhere_pkg"}
    without_timm = [r for r in PROJECT["dependencies"] if not r.startswith("timm")]
    assert not_installed({"timm"}, without_timm) == {"timm"}  # notebook 04's import needs timm in the main list


def test_the_main_dependencies_bring_jupyter_and_ipython():
    assert {"torch", "timm", "jupyterlab", "ipykernel", "ipython", "ipywidgets", "safetensors"} <= installed_by(
        PROJECT["dependencies"]
    )
    assert "pytest" not in installed_by(PROJECT["dependencies"])


def test_lazy_submodules_are_the_package_modules_and_every_export_resolves():
    modules = {m.name for m in pkgutil.iter_modules(vitnb.__path__)} - {"__main__"}
    assert vitnb._SUBMODULES == modules  # a new module is reachable as vitnb.<name>, a removed one is not listed
    missing = [name for name in vitnb.__all__ if getattr(vitnb, name, None) is None]
    assert missing == []  # every public name imports from the module _EXPORTS names


def test_the_type_checkers_view_of_the_api_is_the_run_time_one():
    tree = ast.parse(Path(vitnb.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in block.body for alias in node.names}
    assert seen == vitnb._HOME  # the TYPE_CHECKING imports name the same modules as _EXPORTS, name for name
    assert sorted(vitnb.__all__) == sorted(vitnb._HOME)


def test_every_module_lists_its_public_names_and_each_exists():
    for info in pkgutil.walk_packages(vitnb.__path__, "vitnb."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], f"{info.name}.__all__ names {missing}, which it does not define"
    for module, names in vitnb._EXPORTS.items():  # the package's API is taken from the modules' public names
        public = importlib.import_module(f"vitnb.{module}").__all__
        assert set(names) <= set(public), f"vitnb exports {set(names) - set(public)} that vitnb.{module} keeps private"
