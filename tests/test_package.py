"""pyproject.toml: the packages and console scripts it declares exist; the tools stay outside them."""
import ast
import importlib
import inspect

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("name", sorted(PROJECT["project"]["scripts"]))
def test_each_console_script_is_a_main_taking_argv(name):
    module, _, func = PROJECT["project"]["scripts"][name].partition(":")
    main = getattr(importlib.import_module(module), func)
    assert list(inspect.signature(main).parameters) == ["argv"]
    assert inspect.signature(main).parameters["argv"].default is None


def test_torch_is_pinned_as_requirements_txt_pins_it():
    wanted = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("torch")]
    assert [d for d in PROJECT["project"]["dependencies"] if d.startswith("torch")] == wanted


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", ["sard", "ui"])
def test_the_packaged_code_imports_neither_the_studio_script_nor_the_tools(package):
    offenders = {str(p.relative_to(REPO)): sorted(set(_imports(p)) & {"app", "tools"})
                 for p in (REPO / package).rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}
