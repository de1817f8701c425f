"""The theory notebooks are listed, stored with their outputs, and end with a check.

Executing them is CI's job (``pytest --nbmake notebooks/``, which discards the stored
outputs before running); this test only reads them. The stored outputs come from
``python docs/execute_notebooks.py`` so that every lesson reads, figures included, without
running anything.
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


MAX_BYTES = 1_000_000


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_stored_with_outputs(path):
    fix = "run: python docs/execute_notebooks.py " + f"notebooks/{path.name}"
    code = [c for c in _cells(path) if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"not executed top to bottom; {fix}"
    outputs = [o for c in code for o in c["outputs"]]
    assert not any(o["output_type"] == "error" for o in outputs), f"stored an error; {fix}"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"no figure stored; {fix}"
    assert path.stat().st_size <= MAX_BYTES, f"{path.stat().st_size} bytes: smaller figures"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_ends_with_assert_and_uses_public_api(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert "assert " in "".join(code[-1]["source"])
    source = "".join("".join(c["source"]) for c in code)
    assert "import convexdict as cd" in source
    assert not re.search(r"\bcd\._|convexdict\.\w+\._|from convexdict\.\w* import _", source)
