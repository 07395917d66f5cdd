"""Export of a trained RVQ autoencoder as our own codec, used end to end by s2 (CPU, real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.autoencoder.__main__ import main as train_main
from training.autoencoder.export import export_codec, load_run_model
from training.autoencoder.model import build_autoencoder
from workflow import ecdc
from workflow.codecs import Encoded, load_codec, resolve_spec
from workflow.errors import UsageError, WeightsNotFoundError
from workflow.runner import run_cli
from workflow.s2_wav2encodec24 import main as s2_main

TINY = ["model.seanet.n_filters=4", "model.seanet.dimension=8", "discriminator.filters=4", "optim.batch_size=4",
        "data.num_workers=0", "data.n_val_segments=2", "data.segment_seconds=0.25", "train.logger=none",
        "train.progress=false", "train.sample_every=0", "model.quantizer=rvq", "model.rvq.n_q=4",
        "model.rvq.bins=16", "optim.epochs=1", "optim.updates_per_epoch=2"]


def _tones(folder: Path, n: int, seconds: float = 0.5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(24000 * seconds)) / 24000
    for i in range(n):
        sf.write(folder / f"t{i}.wav", (0.3 * np.sin(2 * np.pi * (180 + 90 * i) * t)).astype(np.float32), 24000)
    return folder


def test_trained_codec_exports_and_s2_encodes_verifies_and_decodes(tmp_path: Path, capsys) -> None:
    run, export = tmp_path / "run", tmp_path / "codec.ts"
    assert train_main(["--1ch", "--data-dir", str(_tones(tmp_path / "train", 4, 1.0)), "--out", str(run),
                       "--device", "cpu", *TINY]) == 0
    assert train_main(["--out", str(run), "--export", str(export)]) == 0
    assert "--codec seanet" in capsys.readouterr().out
    spec = resolve_spec("seanet", export)
    # 24 kHz / hop 320 = 75 Hz, 16 codes = 4 bits: 0.3 kbps per codebook, up to n_q 4.
    assert (spec.sample_rate, spec.hop_length, spec.codebook_size, spec.codebooks) == (24000, 320, 16, (1, 2, 3, 4))
    assert spec.bandwidths == (0.3, 0.6, 0.9, 1.2) and spec.default_bandwidth == 1.2
    audio, tokens = _tones(tmp_path / "audio", 2), tmp_path / "tokens"
    assert s2_main([str(audio), str(tokens), "--codec", "seanet", "--weights", str(export), "--device", "cpu",
                    "--verify", "--no-progress"]) == 0
    assert "verify: 2/2 sampled outputs have correct frame counts" in capsys.readouterr().out
    tok = ecdc.read_ecdc(tokens / "t1.ecdc")
    assert (tok.header.model, tok.header.num_codebooks, tok.num_frames, tok.header.audio_length) == ("seanet", 4, 38, 12000)
    assert tok.header.meta["weights"].startswith("sha256:")
    # Decoding the file's codes through the codec equals the trained model's own decoder.
    codec = load_codec("seanet", weights=export, device="cpu")
    back = codec.decode(Encoded(tok.segments, tok.scales, tok.header.audio_length))
    model = load_run_model(run / "checkpoints" / "autoencoder_best.pt").eval()
    with torch.no_grad():
        own = model.decode(torch.from_numpy(tok.segments[0].astype(np.int64))[None], length=12000)[0].numpy()
    assert back.shape == (1, 12000)
    np.testing.assert_allclose(back, own, atol=1e-5)
    # A re-run finds every output valid (same codec, codebooks and weights hash).
    assert s2_main([str(audio), str(tokens), "--codec", "seanet", "--weights", str(export), "--device", "cpu",
                    "--list-missing"]) == 0
    assert "2 of 2 inputs have a valid output" in capsys.readouterr().out


def test_exported_codec_computes_what_the_model_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_autoencoder({"channels": 1, "sample_rate": 2400, "quantizer": "rvq",
                               "seanet": {"n_filters": 4, "ratios": (4, 2), "dimension": 8, "lstm": 1},
                               "rvq": {"n_q": 4, "bins": 32}})
    x = 0.3 * torch.randn(1, 1, 1001)  # not a multiple of the hop: both zero-pad the end
    model.train()
    model(x)  # k-means initialises the codebooks
    model.eval()
    codec = load_codec("seanet", weights=export_codec(model, tmp_path / "c.ts"), device="cpu", bandwidth=4.5)
    assert codec.num_codebooks == 3  # 300 Hz x 5 bits = 1.5 kbps per codebook
    with torch.no_grad():
        codes = model.encode(x, n_q=3)
        assert torch.equal(codec.model.encode(x, 3), codes)
        np.testing.assert_allclose(codec.model.decode(codes).numpy(), model.decode(codes).numpy(), atol=1e-6)
    enc = codec.encode(x[0].numpy())
    assert enc.num_codebooks == 3 and enc.num_frames == 126 and enc.audio_length == 1001


def test_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(WeightsNotFoundError, match="--export"):
        resolve_spec("seanet", "pretrained")
    (tmp_path / "junk.ts").write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a seanet codec export"):
        resolve_spec("seanet", tmp_path / "junk.ts")
    with pytest.raises(UsageError, match="RVQ"):
        export_codec(build_autoencoder({"sample_rate": 2400, "seanet": {"n_filters": 4, "ratios": (4, 2),
                                                                        "dimension": 8, "lstm": 0}}), tmp_path / "x.ts")
    assert run_cli(train_main, ["--export", str(tmp_path / "x.ts")]) == 2
    assert "--out" in capsys.readouterr().err
