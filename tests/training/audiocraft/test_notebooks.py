"""The two RunPod notebooks, executed headless with papermill.

Notebook 01 fetches its FMA subset from a zip served on 127.0.0.1 with Range support (install,
clone and apt steps switched off by parameters); Notebook 02 runs up to the launch as a dry run
against an interpreter that sees an AudioCraft-shaped tree, and prints the exact command.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import nbformat
import papermill
import pytest
import soundfile as sf

from tests.http_range_server import serve

from .conftest import make_fma_zip, notebook_text, run_notebook

REPO = Path(__file__).resolve().parents[3]
NB_A = "01_fma_small_mini_setup.ipynb"
NB_B = "02_audiocraft_train_compression_debug.ipynb"
OFFLINE = dict(INSTALL_SYSTEM_PACKAGES=False, PIP_INSTALL=False, CLONE_AUDIOCRAFT=False)


@pytest.mark.parametrize("name", [NB_A, NB_B])
def test_notebooks_have_papermill_parameters_and_thin_cells(name: str) -> None:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and nb.cells.index(tagged[0]) == 1
    params = tagged[0].source
    # papermill must parse every line (a '=' inside a comment silently drops a parameter).
    declared = [line.split("=")[0].strip() for line in params.splitlines() if line and not line.startswith("#")]
    assert list(papermill.inspect_notebook(str(REPO / "notebooks" / name))) == declared
    for key in ("WORKSPACE = \"/workspace\"", "REPO_DIR", "AUDIOCRAFT_DIR", "WORK_DIR", "DSET_NAME", "PIP_INSTALL"):
        assert key in params
    for cell in nb.cells:
        if cell.cell_type == "code" and cell is not tagged[0]:
            assert len(cell.source.splitlines()) <= 20, "notebook cells stay thin: logic lives in the package"
            assert not cell.get("outputs"), "notebooks are committed without outputs"


def test_notebook_a_then_b_dry_run(tmp_path: Path, make_fake_audiocraft) -> None:
    fake = make_fake_audiocraft()
    names = make_fma_zip(tmp_path / "fma_small.zip", n_tracks=6, seconds=4.0)
    data = (tmp_path / "fma_small.zip").read_bytes()
    assert len(data) > 3 * 65_633  # bigger than the tail read, so members need requests of their own
    common = dict(WORKSPACE=str(tmp_path), AUDIOCRAFT_DIR=str(fake.root), WORK_DIR=str(tmp_path / "mini"),
                  DSET_NAME="nbtest", SEGMENT_SECONDS=1.0)
    with serve() as srv:
        srv.state.files["/fma/fma_small.zip"] = data
        nb = run_notebook(NB_A, tmp_path / "run_a", **common, **OFFLINE, FMA_ZIP_URL=srv.url("/fma/fma_small.zip"),
                          NUM_SAMPLES_TOTAL=4, RAW_DIR=str(tmp_path / "raw"), WORKERS=1)
        requests = list(srv.state.requests)
    text = notebook_text(nb)
    # Ranged requests only (the tail, maybe the directory, the members not inside the tail):
    # never the whole file.
    assert 2 <= len(requests) <= 2 + 4 and all(r["range"] for r in requests)
    fetched = sorted(str(p.relative_to(tmp_path / "raw")) for p in (tmp_path / "raw").rglob("*.*"))
    assert fetched == sorted(names[:4])
    assert "skipped (INSTALL_SYSTEM_PACKAGES=False)" in text or "system packages present" in text
    assert "AudioCraft checkout present" in text
    dset_yaml = fake.config_dir / "dset" / "audio" / "nbtest.yaml"
    assert dset_yaml.read_text().startswith("# @package __global__")
    for split in ("train", "valid"):
        lines = [json.loads(x) for x in (tmp_path / "mini" / "egs" / split / "data.jsonl").read_text().splitlines()]
        assert lines and all(e["sample_rate"] == 32000 and e["channels"] == 1 for e in lines)
        assert sf.info(lines[0]["path"]).samplerate == 32000
    assert "ready: dset=audio/nbtest" in text

    # Re-running Notebook A fetches nothing new and changes nothing.
    mtime = (tmp_path / "mini" / "egs" / "train" / "data.jsonl").stat().st_mtime_ns
    with serve() as srv:
        srv.state.files["/fma/fma_small.zip"] = data
        text2 = notebook_text(run_notebook(NB_A, tmp_path / "run_a2", **common, **OFFLINE, NUM_SAMPLES_TOTAL=4,
                                           FMA_ZIP_URL=srv.url("/fma/fma_small.zip"), RAW_DIR=str(tmp_path / "raw")))
        assert len(srv.state.requests) == 1  # the directory read only
    assert "0 new, 4 already there" in text2 and "unchanged" in text2
    assert (tmp_path / "mini" / "egs" / "train" / "data.jsonl").stat().st_mtime_ns == mtime

    nb = run_notebook(NB_B, tmp_path / "run_b", **common, DRY_RUN=True, PIP_INSTALL=False,
                      AUDIOCRAFT_PYTHON=fake.python, DORA_DIR=str(tmp_path / "dora"))
    text = notebook_text(nb)
    line = next(x for x in text.splitlines() if "-m dora" in x)
    words = shlex.split(line)
    cmd = words[words.index(fake.python):]
    assert cmd == [fake.python, "-m", "dora", "-P", "audiocraft", "run", "solver=compression/debug",
                   "dset=audio/nbtest", "dataset.batch_size=8", "dataset.num_workers=4",
                   "optim.updates_per_epoch=50", "dataset.valid.num_samples=30", "evaluate.every=1",
                   "generate.every=1", "sample_rate=32000", "channels=1"]
    assert f"AUDIOCRAFT_DORA_DIR={tmp_path / 'dora'}" in words and "AUDIOCRAFT_TEAM=default" in words
    assert "error:" not in text and "dry run: nothing was trained" in text
    assert not (tmp_path / "dora").exists()


def test_notebook_b_fails_early_without_notebook_a(tmp_path: Path, make_fake_audiocraft) -> None:
    fake = make_fake_audiocraft()
    with pytest.raises(papermill.PapermillExecutionError) as exc:
        run_notebook(NB_B, tmp_path / "run_b", WORKSPACE=str(tmp_path), AUDIOCRAFT_DIR=str(fake.root),
                     WORK_DIR=str(tmp_path / "nothing"), DSET_NAME="absent", DRY_RUN=True, PIP_INSTALL=False,
                     AUDIOCRAFT_PYTHON=fake.python)
    assert exc.value.ename == "MissingArtifactError"
    assert "run Notebook A (notebooks/01_fma_small_mini_setup.ipynb) first" in exc.value.evalue
    assert "dset config" in exc.value.evalue and "train manifest" in exc.value.evalue


def test_notebook_a_local_folder_fallback(tmp_path: Path, make_fake_audiocraft) -> None:
    import zipfile

    fake = make_fake_audiocraft()
    make_fma_zip(tmp_path / "fma_small.zip", n_tracks=3)
    zipfile.ZipFile(tmp_path / "fma_small.zip").extractall(tmp_path / "extracted")
    nb = run_notebook(NB_A, tmp_path / "run", WORKSPACE=str(tmp_path), AUDIOCRAFT_DIR=str(fake.root),
                      WORK_DIR=str(tmp_path / "mini"), DSET_NAME="local", SEGMENT_SECONDS=1.0, **OFFLINE,
                      DOWNLOAD_FMA=False, FMA_LOCAL=str(tmp_path / "extracted"), NUM_SAMPLES_TOTAL=3,
                      RAW_DIR=str(tmp_path / "raw"))
    assert "3 tracks in" in notebook_text(nb)
    assert (fake.config_dir / "dset" / "audio" / "local.yaml").is_file()
