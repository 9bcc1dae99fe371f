"""Notebooks: committed clean (no outputs) and valid; they run for real in test_e2e.py."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_example_notebooks_exist() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "01_explore_tiles.ipynb",
        "02_compare_runs.ipynb",
        "03_predict_with_champion.ipynb",
        "04_call_the_served_model.ipynb",
        "05_scene_and_mask_on_the_map.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_valid_and_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].cell_type == "markdown"  # says what the notebook is for
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear outputs first"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_code_compiles(path: Path) -> None:
    to_python = TransformerManager().transform_cell  # turns %magics into Python
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "code":
            compile(to_python(cell.source), f"{path.name} cell {index}", "exec")
