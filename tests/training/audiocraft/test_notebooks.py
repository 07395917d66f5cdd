"""The two RunPod notebooks against the spec's section list (numbered sections, cell kinds,
parameter names, the checks each section must print), their committed outputs, and Notebook B's
early stop without Notebook A. The full run on a fresh pod is in test_real_audiocraft.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill
import pytest

from .conftest import run_notebook

REPO = Path(__file__).resolve().parents[3]
NB_A = "01_fma_small_mini_setup.ipynb"
NB_B = "02_audiocraft_train_compression_debug.ipynb"

# (section, kind of its code cells: "bash", "python" or "both", strings its code must contain)
SECTIONS_A = [
    (0, "python", ["BASE_DIR = \"/workspace\"", "DATA_DIR = f\"{BASE_DIR}/data/fma_small_mini\"",
                   "AUDIOCRAFT_REPO_DIR = f\"{BASE_DIR}/audiocraft\"",
                   "EXPERIMENTS_DIR = f\"{BASE_DIR}/experiments/audiocraft\"", "SEGMENT_SECONDS = 10",
                   "TARGET_SR = 32000", "CHANNELS = 1", "TRAIN_RATIO = 0.9", "RANDOM_SEED = 42",
                   "NUM_SAMPLES_TOTAL = ", "REPO_URL = "]),
    (1, "bash", ["pkg-config", "ffmpeg", "libavformat-dev libavcodec-dev libavdevice-dev libavutil-dev "
                 "libswresample-dev libswscale-dev", "ffmpeg -version", "ffprobe -version"]),
    (2, "both", ["pip install -q -U pip setuptools wheel", "pip install -q -U dora-search", "torch==2.1.0",
                 "--index-url", "git clone -q \"$REPO_URL\"", "pull --ff-only", "pip install -q -e \"$REPO_DIR\"",
                 "torch.__version__, \"cuda\", torch.cuda.is_available()"]),
    (3, "bash", ["rm -rf \"$D\"", "git -c advice.detachedHead=false clone", "$AUDIOCRAFT_REPO_URL",
                 "ls -la \"$D/config\""]),
    (4, "both", ["cd \"$AUDIOCRAFT_REPO_DIR\"", "pip install -q -r requirements.txt", "pip install -q -e .",
                 "audiocraft OK"]),
    (5, "bash", ["xformers"]),
    (6, "both", ["fma.fetch_subset", "wav_32k_mono", "ffmpeg -nostdin", "-ar \"$TARGET_SR\"", "ls \"$OUT\""]),
    (7, "python", ["segments_10s", "len(segments)", "nb.check_random_durations(segments"]),
    (8, "python", ["\"manifests\"", "nb.write_split_manifests"]),
    (9, "python", ["nb.broken_links", "assert n > 0 and not broken"]),
    (10, "python", ["data.jsonl", "json.loads(lines[0])", "nb.check_random_durations(paths"]),
    (11, "bash", ["config/dset/audio/$DSET_NAME.yaml", "# @package __global__\n\ndatasource:\n"
                  "  max_sample_rate: $TARGET_SR\n  max_channels: $CHANNELS\n  train: $DATA_DIR/egs/train\n"
                  "  valid: $DATA_DIR/egs/valid\n  evaluate: $DATA_DIR/egs/valid\n"
                  "  generate: $DATA_DIR/egs/valid\n", "cat \"$F\""]),
    (12, "python", ["torch.cuda.is_available()", "audiocraft import ok", "train/valid segments",
                    "sample:", "exists", "EXPERIMENTS_DIR", "ready-to-train"]),
]
SECTIONS_B = [
    (0, "python", ["AUDIOCRAFT_REPO_DIR = f\"{BASE_DIR}/audiocraft\"",
                   "EXPERIMENTS_DIR = f\"{BASE_DIR}/experiments/audiocraft\"", "DSET = \"audio/fma_small_mini\"",
                   "SOLVER = \"compression/debug\"", "SEGMENT_SECONDS = 10", "BATCH_SIZE = 8", "NUM_WORKERS = 4",
                   "UPDATES_PER_EPOCH = 50", "VALID_NUM_SAMPLES = 30", "GENERATE_EVERY = 1",
                   "EVALUATE_EVERY = 1"]),
    (1, "python", ["dset\" / f\"{DSET}.yaml", "\"train\" / \"data.jsonl\"", "\"valid\" / \"data.jsonl\"",
                   "audiocraft", "ac[\"cuda\"]", "run Notebook A"]),
    (2, "bash", ["AUDIOCRAFT_TEAM=default", "AUDIOCRAFT_DORA_DIR=\"$EXPERIMENTS_DIR\"", "USER=root",
                 "-m dora -P audiocraft run solver=\"$SOLVER\"", "dset=\"$DSET\"",
                 "dataset.segment_duration=\"$SEGMENT_SECONDS\"", "dataset.batch_size=\"$BATCH_SIZE\"",
                 "dataset.num_workers=\"$NUM_WORKERS\"", "optim.updates_per_epoch=\"$UPDATES_PER_EPOCH\"",
                 "dataset.valid.num_samples=\"$VALID_NUM_SAMPLES\"", "generate.every=\"$GENERATE_EVERY\"",
                 "evaluate.every=\"$EVALUATE_EVERY\""]),
    (3, "python", ["nb.parse_xp_id", "XP id:", "log dir:", "xp.describe"]),
    (4, "python", ["validate_xp", "checkpoint", "solver.log.0"]),
    (5, "bash", ["-m dora -P audiocraft run", "RERUN_NUM_WORKERS"]),
]


def _sections(nb) -> dict[int, list]:
    """Code cells grouped under the ``## N · title`` heading above them."""
    out: dict[int, list] = {}
    current = None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (m := re.match(r"## (\d+) · ", cell.source)):
            current = int(m.group(1))
            out[current] = []
        elif cell.cell_type == "code":
            assert current is not None, f"code cell before the first section: {cell.source[:60]}"
            out[current].append(cell)
    return out


@pytest.mark.parametrize(("name", "spec"), [(NB_A, SECTIONS_A), (NB_B, SECTIONS_B)])
def test_notebook_follows_the_spec_section_by_section(name: str, spec: list) -> None:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    sections = _sections(nb)
    assert sorted(sections) == [s for s, _, _ in spec]
    for number, kind, needles in spec:
        cells = sections[number]
        kinds = {"bash" if c.source.startswith("%%bash") else "python" for c in cells}
        assert kinds == ({"bash", "python"} if kind == "both" else {kind}), (name, number, kinds)
        text = "\n".join(c.source for c in cells)
        for needle in needles:
            assert needle in text, (name, number, needle)
    for cell in nb.cells:  # shell cells stop at the first failing command (the xformers probe may fail)
        if cell.source.startswith("%%bash") and "xformers.ops" not in cell.source:
            assert "set -euo pipefail" in cell.source, cell.source[:80]


@pytest.mark.parametrize("name", [NB_A, NB_B])
def test_parameters_cell_and_committed_outputs(name: str) -> None:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    declared = [line.split("=")[0].strip() for line in tagged[0].source.splitlines()
                if line and not line.startswith("#")]
    assert list(papermill.inspect_notebook(str(REPO / "notebooks" / name))) == declared
    assert declared[0] == "BASE_DIR"
    # The stored outputs of a representative run: every code cell ran, without errors, and no path
    # of the machine it ran on is left (they read /workspace/...).
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.get("output_type") == "error"]
    text = nbformat.writes(nb)
    for private in ("/tmp/", "/work/", "/home/", "/root/", "pytest-of"):
        assert private not in text, private
    assert "/workspace/" in "".join(str(o) for o in outputs)


def test_notebook_b_fails_early_without_notebook_a(tmp_path: Path) -> None:
    with pytest.raises(papermill.PapermillExecutionError) as exc:
        run_notebook(NB_B, tmp_path / "run_b", BASE_DIR=str(tmp_path / "workspace"))
    assert exc.value.ename == "MissingArtifactError"
    assert "run Notebook A (notebooks/01_fma_small_mini_setup.ipynb) first" in exc.value.evalue
    assert "dset config" in exc.value.evalue and "train data.jsonl" in exc.value.evalue
