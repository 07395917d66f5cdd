"""python -m training.audiocraft prepare / dset: exit codes and what they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.audiocraft.__main__ import main


@pytest.mark.parametrize("command, flags", [
    ("prepare", ("--train-ratio", "--seed", "--segment-seconds", "--sample-rate", "--skip-errors")),
    ("dset", ("--name", "--egs", "--config-dir", "--audiocraft-dir", "--force")),
    ("launch", ("--dset", "--solver", "--dora-dir", "--dry-run", "--grid", "--clear", "overrides")),
    ("xp", ("--dora-dir", "--sig", "--plot", "--check")),
    ("fetch-fma", ("--url", "--local", "--out", "--num-tracks")),
])
def test_subcommand_help(command: str, flags) -> None:
    res = subprocess.run([sys.executable, "-m", "training.audiocraft", command, "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert all(f in res.stdout for f in flags)


def test_prepare_and_dset_cli(audio_tree: Path, tmp_path: Path, capsys) -> None:
    (audio_tree / "broken.wav").write_bytes(b"RIFF????")
    work = tmp_path / "work"
    argv = ["prepare", str(audio_tree), str(work), "--segment-seconds", "1", "--no-progress", "--workers", "1"]
    assert main(argv) == 1  # a failed input: reported, left out, exit 1 …
    out = capsys.readouterr().out
    assert "1 input file(s) failed and were left out: broken.wav" in out
    assert (work / "egs" / "train" / "data.jsonl").is_file()  # … and the manifests are still written
    assert main(argv + ["--skip-errors"]) == 0
    assert "unchanged" in capsys.readouterr().out

    config = tmp_path / "audiocraft" / "config"
    (config / "dset").mkdir(parents=True)
    assert main(["dset", "--name", "mini", "--egs", str(work / "egs"), "--audiocraft-dir", str(config.parent)]) == 0
    assert "dset=audio/mini:" in capsys.readouterr().out and (config / "dset" / "audio" / "mini.yaml").is_file()
    assert main(["dset", "--name", "mini", "--egs", str(work / "egs")]) == 2
    assert "--config-dir" in capsys.readouterr().err


def test_errors_exit_with_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "training.audiocraft", "xp", "--dora-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.strip().startswith("error: no experiments:")
    res = subprocess.run([sys.executable, "-m", "training.audiocraft", "prepare", str(tmp_path / "nope"),
                          str(tmp_path / "w")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == f"error: input folder {tmp_path / 'nope'} does not exist"
