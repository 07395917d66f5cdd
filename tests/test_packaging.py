"""The install a user gets from `make`: pinned torch, no torchaudio, console scripts present."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_torchaudio_is_not_installed() -> None:
    # transformers imports torchaudio when present and breaks if it cannot load (no CPU build here).
    assert importlib.util.find_spec("torchaudio") is None


def test_torch_matches_the_single_pin() -> None:
    pins = [line.split("==")[1].strip() for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.startswith("torch==")]
    assert len(pins) == 1
    assert md.version("torch").split("+")[0] == pins[0]


def test_console_scripts_are_registered() -> None:
    eps = {ep.name: ep.value for ep in md.entry_points(group="console_scripts")}
    assert eps["wf-audio-normalize"] == "workflow.s1_audio_normalize:cli"
    assert eps["wf-wav2encodec24"] == "workflow.s2_wav2encodec24:cli"
    for name, module in [("wf-sidecar-init", "s3_sidecar_init"), ("wf-sidecar-add", "s4_sidecar_add"),
                         ("wf-build-dataset", "s5_build_dataset_from_folder"),
                         ("wf-sidecar-audit", "sidecar_audit"), ("wf-inspect", "inspect_dataset")]:
        assert eps[name] == f"workflow.{module}:cli"
        assert importlib.util.find_spec(f"workflow.{module}") is not None


def test_stage_imports_stay_light() -> None:
    """`--help`, the registry and the token reader must not pay for importing torch (seconds)."""
    import subprocess
    import sys

    code = ("import sys, workflow.codecs, workflow.ecdc, workflow.s1_audio_normalize, "
            "workflow.s2_wav2encodec24; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for pkg in ("paramproducers", "training", "midigroove_poc"):
        assert importlib.util.find_spec(pkg) is not None
