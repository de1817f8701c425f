"""The theory notebooks are listed, stored without outputs, and end with a check.

Executing them is CI's job (``pytest --nbmake notebooks/``); this test only reads them.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_notebooks_exist():
    assert len(PATHS) >= 9


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_listed_in_readme(path):
    assert f"({path.name})" in (NOTEBOOKS / "README.md").read_text()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_ends_with_assert_and_uses_public_api(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert "assert " in "".join(code[-1]["source"])
    source = "".join("".join(c["source"]) for c in code)
    assert "import convexdict as cd" in source
    assert not re.search(r"\bcd\._|convexdict\.\w+\._|from convexdict\.\w* import _", source)
