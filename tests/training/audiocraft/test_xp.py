"""xp: discovery, summary, plot and post-run validation on recorded XP folders made here."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.audiocraft.__main__ import main
from training.audiocraft.xp import (
    XpError, describe, find_xp, load_xp, loss_series, metrics_table, plot_losses, validate_xp,
)


def _epoch(i: int) -> dict:
    return {"train": {"bandwidth": 0.84, "l1": 0.3 / i, "penalty": 0.001, "ratio1": 0.07,
                      "g_loss": 0.3 / i, "mel": 3.0 / i, "msspec": 1.3 / i, "sisnr": 40.0 + i, "duration": 0.5},
            "valid": {"bandwidth": 1.1, "l1": 0.31 / i, "mel": 3.1 / i, "msspec": 1.4 / i, "sisnr": 39.0 + i,
                      "duration": 0.04},
            "evaluate": {"sisnr": 39.0 + i, "duration": 0.02},
            "generate": {"duration": 0.08}}


def make_xp(dora: Path, sig: str, epochs: int, *, stamp: float, samples: bool = True,
            checkpoint: bool = True) -> Path:
    """An XP folder laid out as Dora + AudioCraft 1.3 write it."""
    xp = dora / "xps" / sig
    (xp / ".hydra").mkdir(parents=True)
    (xp / ".argv.json").write_text(json.dumps(["solver=compression/debug", "dset=audio/mini"]))
    (xp / ".hydra" / "config.yaml").write_text("solver: compression\n")
    (xp / "history.json").write_text(json.dumps([_epoch(i) for i in range(1, epochs + 1)]))
    (xp / "solver.log.0").write_text("Train Summary | Epoch 1 | l1=0.3\n")
    if checkpoint:
        torch.save({"epoch": epochs, "model": {"w": torch.zeros(3)}}, xp / "checkpoint.th")
    if samples:
        for sub in ("1", "reference"):
            (xp / "samples" / sub).mkdir(parents=True)
            sf.write(xp / "samples" / sub / "s0.wav", np.zeros(3200, np.float32), 32000)
    for p in [xp, *xp.rglob("*")]:
        os.utime(p, (stamp, stamp))
    return xp


@pytest.fixture
def dora(tmp_path: Path) -> Path:
    now = time.time()
    make_xp(tmp_path / "dora", "aaaa1111", 1, stamp=now - 100)
    make_xp(tmp_path / "dora", "bbbb2222", 3, stamp=now - 10)
    make_xp(tmp_path / "dora", "cccc3333", 2, stamp=now - 50)
    return tmp_path / "dora"


def test_find_newest_and_by_prefix(dora: Path) -> None:
    assert find_xp(dora).name == "bbbb2222"
    assert find_xp(dora, "aaa").name == "aaaa1111"
    with pytest.raises(XpError, match="not found.*have: "):
        find_xp(dora, "zzz")
    with pytest.raises(XpError, match="does not exist.*launch"):
        find_xp(dora / "nowhere")


def test_summary_and_table(dora: Path) -> None:
    s = load_xp(find_xp(dora))
    assert (s.sig, s.epochs, s.samples) == ("bbbb2222", 3, 2)
    assert s.argv == ["solver=compression/debug", "dset=audio/mini"]
    assert set(s.files) == {".argv.json", "history.json", "checkpoint.th", "solver.log.0", ".hydra/config.yaml"}
    table = metrics_table(s)
    assert table.splitlines()[0] == "epoch 3"
    assert table.splitlines()[1].split() == ["metric", "train", "valid", "evaluate", "generate"]
    l1 = next(line for line in table.splitlines() if line.startswith("l1 ")).split()
    assert float(l1[1]) == pytest.approx(0.1) and float(l1[2]) == pytest.approx(0.31 / 3, rel=1e-3)
    assert l1[3] == "-"
    text = describe(s)
    assert "bbbb2222" in text and "checkpoint.th" in text and "samples/" in text


def test_loss_series_and_plot(dora: Path, tmp_path: Path) -> None:
    s = load_xp(find_xp(dora))
    series = loss_series(s)
    assert series["train"]["mel"] == pytest.approx([3.0, 1.5, 1.0])
    assert "duration" not in series["train"] and "bandwidth" not in series["train"]
    assert not any(k.startswith("ratio") for k in series["train"])
    png = plot_losses(s, tmp_path / "plots" / "losses.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_validate(dora: Path, tmp_path: Path) -> None:
    assert validate_xp(load_xp(find_xp(dora))) == []
    bad = make_xp(tmp_path / "d2", "dddd", 2, stamp=time.time(), samples=False, checkpoint=False)
    hist = json.loads((bad / "history.json").read_text())
    hist[1]["train"]["mel"] = math.nan
    (bad / "history.json").write_text(json.dumps(hist))
    problems = validate_xp(load_xp(bad), min_epochs=3)
    assert any("epoch(s), expected >= 3" in p for p in problems)
    assert any("epoch 2 train.mel = nan" in p for p in problems)
    assert any("checkpoint.th" in p for p in problems) and any("samples/" in p for p in problems)


def test_xp_cli(dora: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "l.png"
    assert main(["xp", "--dora-dir", str(dora), "--plot", str(png), "--check", "--min-epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "XP bbbb2222" in out and "check: ok" in out and png.exists()
    assert main(["xp", "--dora-dir", str(dora), "--sig", "aaaa", "--check", "--min-epochs", "2",
                 "--no-plot"]) == 1
    assert "problem: history.json has 1 epoch(s)" in capsys.readouterr().out
