"""The whole seed workflow through the real console scripts on a messy generated tree:
s1 → s2 → s3 → s4 → s5 → audit, then `datasets.load_from_disk` and `TokenCondDataset`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workflow.synth import drum, tone

BIN = Path(sys.executable).parent

# (relative path, pitch, amp, sample rate, channels); the parameters are also in the names.
GOOD = [
    ("songs/näive set/tone_pitch_60.00_amp_0.50.wav", 60.0, 0.50, 44100, 2),
    ("songs/näive set/deeper/tone_pitch_64.50_amp_0.25.flac", 64.5, 0.25, 48000, 1),
    ("with space/tone_pitch_55.00_amp_0.75.wav", 55.0, 0.75, 22050, 1),
    ("drums/kick_pitch_36.00_amp_0.90.wav", 36.0, 0.90, 16000, 6),
    ("tone_pitch_70.25_amp_0.40.wav", 70.25, 0.40, 24000, 1),
]
SILENT = ("quiet/silence_pitch_0.00_amp_0.00.wav", 0.0, 0.0, 24000, 1)


def _cli(name: str, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BIN / name), *args, "--no-progress"] if name != "wf-build-dataset"
                         else [str(BIN / name), *args], capture_output=True, text=True)
    assert res.returncode in ok, f"{name} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    raw = root / "raw"
    for rel, pitch, amp, sr, ch in GOOD:
        p = raw / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        x = tone(pitch, amp, 1.2, sr, ch) if "kick" not in rel else drum("kick", 100, 1.2, sr, 0, ch) * amp
        sf.write(p, x.T, sr, subtype="PCM_16")
    s = raw / SILENT[0]
    s.parent.mkdir(parents=True, exist_ok=True)
    sf.write(s, np.zeros(24000, np.float32), 24000)
    (raw / "broken" / "tone_pitch_50.00_amp_0.50.wav").parent.mkdir(parents=True)
    (raw / "broken" / "tone_pitch_50.00_amp_0.50.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really")

    paths = {"root": root, "raw": raw, "norm": root / "norm", "tokens": root / "tokens",
             "dataset": root / "dataset"}
    paths["s1"] = _cli("wf-audio-normalize", str(raw), str(paths["norm"]), "--workers", "2", ok=(1,))
    _cli("wf-wav2encodec24", str(paths["norm"]), str(paths["tokens"]), "--weights", "random", "--device", "cpu")
    _cli("wf-sidecar-init", "--audio-root", str(paths["tokens"]))
    _cli("wf-sidecar-add", "--audio-root", str(paths["tokens"]), "--producer", "from_filename",
         "--filename-keys", "pitch", "amp", "--producer", "lin", "--lin", "progress=0:1",
         "--producer", "from_audio", "--wav-root", str(paths["norm"]), "--features", "rms_db", "zcr")
    paths["audit"] = _cli("wf-sidecar-audit", str(paths["tokens"]), "--expect-fps", "75", "--verify-ranges",
                          "--require", "pitch,amp,progress,rms_db,zcr", "--plot", str(root / "features.png"))
    _cli("wf-build-dataset", str(paths["tokens"]), str(paths["dataset"]), "--wav-root", str(paths["norm"]),
         "--embed", "--verify")
    return paths


def test_corrupt_file_reported_and_nothing_else_lost(pipeline) -> None:
    s1 = pipeline["s1"]
    assert "FAILED broken/tone_pitch_50.00_amp_0.50.wav" in s1.stdout
    assert "silent" in s1.stdout
    tokens = sorted(p.relative_to(pipeline["tokens"]).as_posix() for p in pipeline["tokens"].rglob("*.ecdc"))
    expect = sorted(str(Path(rel).with_suffix(".ecdc")) for rel, *_ in GOOD + [SILENT])
    assert tokens == expect
    import datasets
    dd = datasets.load_from_disk(str(pipeline["dataset"]))
    assert sorted(dd["train"]["id"]) == sorted(str(Path(r).with_suffix("")) for r, *_ in GOOD + [SILENT])


def test_dataset_rows_shapes_and_parsed_values(pipeline) -> None:
    import datasets

    from workflow import ecdc, hfdata, sidecar

    ds = datasets.load_from_disk(str(pipeline["dataset"]))["train"]
    meta = hfdata.read_dataset_meta(pipeline["dataset"])
    assert meta["feature_order"] == ["pitch", "amp", "progress", "rms_db", "zcr"]
    assert meta["weights"] == "random" and meta["num_codebooks"] == 8 and meta["fps"] == 75.0
    want = {str(Path(rel).with_suffix("")): (pitch, amp) for rel, pitch, amp, *_ in GOOD + [SILENT]}
    for row in ds:
        tok = ecdc.read_ecdc(hfdata.resolve_path(pipeline["dataset"], row["audio"]))
        assert row["num_frames"] == tok.num_frames == math.ceil(tok.header.audio_length / 320)
        assert row["num_codebooks"] == 8 and abs(row["duration"] - tok.header.audio_length / 24000) < 1e-3
        assert np.array_equal(np.asarray(row["codes"], np.int16), tok.codes)
        sc = sidecar.read_sidecar(hfdata.resolve_path(pipeline["dataset"], row["cond"]))
        assert sc.frames == tok.num_frames and sc.names == meta["feature_order"]
        pitch, amp = want[row["id"]]
        np.testing.assert_allclose(sc.column("pitch"), pitch, atol=0.05)  # float16 storage
        np.testing.assert_allclose(sc.column("amp"), amp, atol=1e-3)
        np.testing.assert_allclose(sc.column("progress")[[0, -1]], [0.0, 1.0], atol=1e-3)
        assert hfdata.resolve_path(pipeline["dataset"], row["wav"]).exists()


def test_token_cond_dataset_windows_are_aligned(pipeline) -> None:
    import torch

    from workflow import ecdc, hfdata, sidecar
    from workflow.torchdata import TokenCondDataset, collate

    ds = TokenCondDataset(pipeline["dataset"], "train", window_frames=40, random_crop=True)
    raw = TokenCondDataset(pipeline["dataset"], "train", window_frames=40, normalize_cond=False)
    meta = hfdata.read_dataset_meta(pipeline["dataset"])
    lo = np.array([meta["features"][n]["min"] for n in meta["feature_order"]])
    hi = np.array([meta["features"][n]["max"] for n in meta["feature_order"]])
    torch.manual_seed(0)
    for i in range(len(ds)):
        item = ds[i]
        codes, cond, start, n = item["codes"], item["cond"], item["start"], item["length"]
        assert codes.dtype == torch.long and codes.shape == (8, n) and cond.shape == (n, 5) and n == 40
        row = ds.row(i)
        tok = ecdc.read_ecdc(hfdata.resolve_path(pipeline["dataset"], row["audio"]))
        assert torch.equal(codes, torch.from_numpy(tok.codes[:, start:start + n].astype(np.int64)))
        sc = sidecar.read_sidecar(hfdata.resolve_path(pipeline["dataset"], row["cond"]))
        expect = np.clip((sc.values[start:start + n] - lo) / np.where(hi > lo, hi - lo, 1), 0, 1)
        np.testing.assert_allclose(cond.numpy(), expect, atol=1e-5)
        assert 0.0 <= float(cond.min()) and float(cond.max()) <= 1.0
        np.testing.assert_allclose(raw.window(i, start, n)["cond"].numpy(), sc.values[start:start + n], atol=1e-6)
    batch = collate([ds[0], ds[1]])
    assert batch["codes"].shape == (2, 8, 40) and batch["mask"].all()


def test_audit_is_clean_and_plots(pipeline) -> None:
    assert "0 issue" in pipeline["audit"].stdout or "no issues" in pipeline["audit"].stdout.lower()
    import matplotlib.image as mpimg
    assert mpimg.imread(pipeline["root"] / "features.png").shape[0] > 100
    card = (pipeline["dataset"] / "README.md").read_text()
    assert "random" in card.lower() and "pitch" in card
    assert json.loads((pipeline["dataset"] / "enc_hf_workflow.json").read_text())["splits"]["train"]["rows"] == 6
