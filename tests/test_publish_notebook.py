"""tools/publish_notebook.py: executed notebook → committed copy without this machine's paths."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import publish_notebook as pn  # noqa: E402


def _executed(tmp: str) -> nbformat.NotebookNode:
    injected = new_code_cell(f'BASE_DIR = "{tmp}/workspace"')
    injected.metadata["tags"] = ["injected-parameters"]
    run = new_code_cell("print(DATA_DIR)", outputs=[
        new_output("stream", name="stdout", text=f"{tmp}/workspace/data and {tmp}/works"),
        new_output("stream", name="stdout", text="pace-venv/bin\n"),  # a path split across two chunks
        new_output("execute_result", data={"text/plain": f"'{tmp}/workspace'"}, execution_count=2)])
    run.metadata["papermill"] = {"duration": 1.0}
    nb = new_notebook(cells=[new_code_cell("BASE_DIR = '/workspace'"), injected, run])
    nb.metadata["papermill"] = {"parameters": {"BASE_DIR": f"{tmp}/workspace"}}
    return nb


def test_publish_maps_paths_and_drops_papermill_traces(tmp_path: Path) -> None:
    tmp = str(tmp_path)
    src = tmp_path / "run.ipynb"
    nbformat.write(_executed(tmp), src)
    rc = pn.main([str(src), str(tmp_path / "out.ipynb"), "--replace", f"{tmp}/workspace=/workspace",
                  "--replace", f"{tmp}/workspace-venv=/workspace/venv-audiocraft", "--forbid", tmp])
    assert rc == 0
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert len(nb.cells) == 2 and "papermill" not in nb.metadata and "papermill" not in nb.cells[1].metadata
    outs = nb.cells[1].outputs
    assert outs[0]["text"] == "/workspace/data and /workspace/venv-audiocraft/bin\n"  # longest match first
    assert outs[1]["data"]["text/plain"] == "'/workspace'"


def test_publish_refuses_a_path_left_behind(tmp_path: Path) -> None:
    with pytest.raises(pn.PublishError, match="cell 1: output still contains"):
        pn.publish(_executed(str(tmp_path)), {f"{tmp_path}/workspace/data": "/workspace/data"}, (str(tmp_path),))
