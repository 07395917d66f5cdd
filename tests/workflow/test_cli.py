"""Every stage script is runnable three ways and has a --help that names its flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module, script, flags", [
    ("s1_audio_normalize", "wf-audio-normalize", ("--target-rms", "--segment-seconds", "--shard-count")),
    ("s2_wav2encodec24", "wf-wav2encodec24", ("--bandwidth", "--list-missing", "--batch-seconds")),
    ("s3_sidecar_init", "wf-sidecar-init", ("--audio-root", "--cond-root", "--manifest-csv")),
    ("s4_sidecar_add", "wf-sidecar-add", ("--producer", "--mode", "--list-producers")),
    ("s5_build_dataset_from_folder", "wf-build-dataset", ("--materialize", "--embed", "--split-ratios")),
    ("sidecar_audit", "wf-sidecar-audit", ("--verify-ranges", "--fail-on", "--plot")),
    ("inspect_dataset", "wf-inspect", ("--hf-ds", "--show", "--verify")),
])
def test_runs_as_script_module_and_console_script(tmp_path: Path, module: str, script: str, flags) -> None:
    """Each stage runs as a file, as ``-m`` and as its console script (workflow/codecs.py must
    not shadow the standard library's codecs when run as a file)."""
    env = {**os.environ, "PYTHONPATH": ""}
    for cmd in ([sys.executable, str(REPO / "workflow" / f"{module}.py"), "--help"],
                [sys.executable, "-m", f"workflow.{module}", "--help"],
                [str(Path(sys.executable).parent / script), "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        assert all(f in res.stdout for f in flags)
