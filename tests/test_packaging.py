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


def _lock_pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / name).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            pkg, _, version = line.partition("==")
            pins[pkg.strip().lower().replace("_", "-")] = version.split(";")[0].strip()
    return pins


def test_venv_is_exactly_the_lock() -> None:
    """`make install` installs requirements/lock.txt: every pin at its version, nothing unlocked."""
    pins = _lock_pins("lock.txt")
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()}
    wrong = {p: (v, installed.get(p)) for p, v in pins.items() if installed.get(p) != v}
    assert not wrong, f"venv differs from requirements/lock.txt (pin, installed): {wrong}; run `make install`"
    # Outside the lock: torch (constraints.txt) with its build's own wheels, this project, and
    # Meta's encodec (installed with --no-deps).
    extra = {p for p in installed if p not in pins and p not in ("torch", "enc-hf-workflow", "encodec")
             and not p.startswith(("nvidia-", "cuda-")) and p != "triton"}
    assert not extra, f"installed but not locked: {sorted(extra)}; add them to the lock (`make lock`)"


def test_locks_leave_torch_to_the_pin() -> None:
    """No lock pins torch or a torch build's CUDA wheels, and the pin has no local label (+cpu):
    so `torch==X` resolves to the CPU wheel here and to PyPI's CUDA build on a CUDA box."""
    for name in ("lock.txt", "audiocraft.lock.txt"):
        pins = _lock_pins(name)
        assert "torch" not in pins and "torchaudio" not in pins, name
        assert not [p for p in pins if p.startswith(("nvidia-", "cuda-")) or p == "triton"], name
        assert {"pip", "wheel"} <= set(pins), name  # the installers are pinned too
    torch_pin = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("torch")]
    assert len(torch_pin) == 1 and "+" not in torch_pin[0]


def test_lock_filter_drops_only_torch_build_wheels() -> None:
    import importlib.util as iu

    spec = iu.spec_from_file_location("lock_tool", REPO / "tools" / "lock.py")
    lock_tool = iu.module_from_spec(spec)
    spec.loader.exec_module(lock_tool)
    text = ("# header\nfilelock==3.0\n    # via torch\nnvidia-cublas==13.1\n    # via torch\n"
            "triton==3.7.1\n    # via torch\ncuda-bindings==13.5\n    # via torch\nnumpy==2.4\n")
    out, dropped = lock_tool.drop_torch_build(text)
    assert out == "# header\nfilelock==3.0\n    # via torch\nnumpy==2.4\n"
    assert dropped == ["nvidia-cublas", "triton", "cuda-bindings"]
