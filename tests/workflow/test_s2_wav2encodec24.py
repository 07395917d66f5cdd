"""s2 end to end through its CLI with a random-weight EnCodec 24 kHz (no downloads)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.codec_checks import LATENT_RTOL, assert_codes_match_up_to_ties, encodec_latents, encodec_margins, padded_row
from workflow import ecdc
from workflow.audio import read_audio
from workflow.codecs import load_codec
from workflow.synth import tone
from workflow.runner import run_cli
from workflow.s2_wav2encodec24 import DistInfo, dist_info, effective_shard, main

from .conftest import write

REPO = Path(__file__).resolve().parents[2]
LENGTHS = {"a/x.wav": 24000, "a/b/y é.wav": 17_777, "z.wav": 9_601, "w.wav": 30_000}


@pytest.fixture(scope="module")
def codec():
    return load_codec("encodec_24khz", weights="random", device="cpu", bandwidth=6.0)


@pytest.fixture
def norm_tree(tmp_path: Path) -> Path:
    root = tmp_path / "norm"
    for i, (rel, n) in enumerate(LENGTHS.items()):
        write(root / rel, tone(50 + 3 * i, 0.4, n / 24000, 24000, 1), 24000)
    return root


def _run(*argv: str) -> int:
    return run_cli(main, [*argv, "--weights", "random", "--device", "cpu", "--no-progress"])


def _last_report(out: Path) -> dict:
    return json.loads(sorted((out / ".reports").glob("*.json"))[-1].read_text())


def test_encodes_tree_with_exact_codes_and_header(norm_tree: Path, tmp_path: Path, codec) -> None:
    out = tmp_path / "tok"
    # A small batch budget forces several batches with padding inside them.
    assert _run(str(norm_tree), str(out), "--workers", "2", "--batch-seconds", "1.5") == 0
    for rel, n in LENGTHS.items():
        path = out / rel.replace(".wav", ".ecdc")
        tok = ecdc.read_ecdc(path)
        h = tok.header
        assert (h.model, h.num_codebooks, h.audio_length) == ("encodec_24khz", 8, n)
        assert tok.num_frames == math.ceil(n / 320)
        assert h.meta["weights"] == "random" and h.fps == 75 and h.meta["bw"] == 6.0
        # The file holds what encoding that file alone gives, up to near-ties (tests/codec_checks.py).
        audio, _ = read_audio(norm_tree / rel)
        z = encodec_latents(codec, padded_row(codec, audio))
        margins = encodec_margins(codec, z, codec.encode(audio).segments[0],
                                  LATENT_RTOL * float(z.norm(dim=0).max()))
        assert_codes_match_up_to_ties(tok.codes, margins, what=rel)
        assert tok.codes.dtype == np.int16 and 0 <= tok.codes.min() and tok.codes.max() < 1024
        # 10 bits per code on disk.
        assert path.stat().st_size == h.data_offset + math.ceil(tok.codes.size * 10 / 8)
    assert _last_report(out)["counts"]["ok"] == 4


def test_resume_repairs_invalid_outputs(norm_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    assert _run(str(norm_tree), str(out)) == 0
    good = out / "a/x.ecdc"
    bad = out / "z.ecdc"
    mtime = good.stat().st_mtime_ns
    bad.write_bytes(bad.read_bytes()[:-5])  # truncated, as by a crash of some other tool
    assert _run(str(norm_tree), str(out)) == 0
    rep = _last_report(out)
    assert rep["counts"]["ok"] == 1 and rep["counts"]["skipped"] == 3
    assert good.stat().st_mtime_ns == mtime
    ecdc.read_ecdc(bad)  # valid again
    # A different bandwidth means a different codebook count: everything is redone.
    assert _run(str(norm_tree), str(out), "--bandwidth", "3.0") == 0
    assert _last_report(out)["counts"]["ok"] == 4
    assert ecdc.read_ecdc_header(good).num_codebooks == 4


def test_bad_inputs_resampled_inputs_and_exit_codes(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    write(src / "ok.wav", tone(60, 0.4, 0.5, 24000, 1), 24000)
    write(src / "stereo44.wav", tone(60, 0.4, 0.5, 44100, 2), 44100)
    (src / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    out = tmp_path / "tok"
    assert _run(str(src), str(out)) == 1
    text = capsys.readouterr().out
    assert "FAILED broken.wav" in text and "resampled" in text
    h = ecdc.read_ecdc_header(out / "stereo44.ecdc")
    assert h.audio_length == 12000  # 0.5 s at the codec's 24 kHz
    assert not (out / "broken.ecdc").exists()
    assert _run(str(src), str(out), "--skip-errors") == 0


def test_list_missing_dry_run_and_orphans(norm_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tok"
    assert _run(str(norm_tree), str(out), "--dry-run") == 0
    assert not out.exists()
    assert "4 to process" in capsys.readouterr().out
    assert _run(str(norm_tree), str(out)) == 0
    (norm_tree / "z.wav").unlink()
    write(norm_tree / "new.wav", tone(60, 0.4, 0.3, 24000, 1), 24000)
    capsys.readouterr()
    assert _run(str(norm_tree), str(out), "--list-missing") == 0
    text = capsys.readouterr().out
    assert "missing\tnew.wav\tmissing" in text and "orphan\tz.ecdc" in text
    assert not (out / "new.ecdc").exists()  # nothing encoded


def test_verify_reports_frames(norm_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tok"
    assert _run(str(norm_tree), str(out), "--verify", "--verify-samples", "2") == 0
    text = capsys.readouterr().out
    assert "verify: 2/2 sampled outputs have correct frame counts" in text and "SNR" in text


def test_cuda_without_gpu_is_an_error(norm_tree: Path, tmp_path: Path, capsys) -> None:
    rc = run_cli(main, [str(norm_tree), str(tmp_path / "tok"), "--weights", "random", "--device", "cuda"])
    assert rc != 0
    assert "cuda" in capsys.readouterr().err.lower()
    assert not (tmp_path / "tok").exists() or not list((tmp_path / "tok").rglob("*.ecdc"))


def test_torchrun_ranks_split_the_work(norm_tree: Path, tmp_path: Path, monkeypatch) -> None:
    assert dist_info({}) == DistInfo()
    assert dist_info({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistInfo(3, 4, 1)
    assert effective_shard(1, 2, DistInfo(1, 4, 1)) == (5, 8)
    out = tmp_path / "tok"
    seen = []
    for rank in range(2):
        # torchrun's variables; --device cpu so no GPU is needed.
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert _run(str(norm_tree), str(out)) == 0
        rep = _last_report(out)
        assert rep["params"]["rank"] == rank and rep["shard_count"] == 2
        seen += [r["key"] for r in rep["results"] if r["status"] == "ok"]
    assert sorted(seen) == sorted(LENGTHS)


def test_weights_from_save_pretrained_folder(norm_tree: Path, tmp_path: Path, codec) -> None:
    folder = tmp_path / "enc24"
    codec.model.save_pretrained(folder)
    out = tmp_path / "tok"
    rc = run_cli(main, [str(norm_tree), str(out), "--weights", str(folder), "--device", "cpu", "--no-progress"])
    assert rc == 0
    h = ecdc.read_ecdc_header(out / "a/x.ecdc")
    assert h.meta["weights"].startswith("sha256:")


def test_outputs_from_other_weights_are_redone(norm_tree: Path, tmp_path: Path, codec, capsys) -> None:
    out = tmp_path / "tok"
    assert _run(str(norm_tree), str(out)) == 0  # a smoke run with random weights…
    folder = tmp_path / "enc24"
    codec.model.save_pretrained(folder)
    with_folder = [str(norm_tree), str(out), "--weights", str(folder), "--device", "cpu", "--no-progress"]
    capsys.readouterr()
    assert run_cli(main, [*with_folder, "--dry-run"]) == 0  # the dry run says what the real run does
    assert "4 to process, 0 already done" in capsys.readouterr().out
    assert run_cli(main, with_folder) == 0
    assert _last_report(out)["counts"]["ok"] == 4  # …does not make the real run skip everything
    assert all(ecdc.read_ecdc_header(p).meta["weights"].startswith("sha256:") for p in out.rglob("*.ecdc"))
    capsys.readouterr()
    assert run_cli(main, [*with_folder, "--dry-run"]) == 0
    assert "0 to process, 4 already done" in capsys.readouterr().out


def test_dry_run_and_list_missing_judge_outputs_like_the_real_run(norm_tree: Path, tmp_path: Path,
                                                                   monkeypatch, capsys) -> None:
    """Issue 13 item 4: after a --weights random run, the pretrained dry run must not say 'done'."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # pretrained weights are not cached: no download tried
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    out = tmp_path / "tok"
    assert _run(str(norm_tree), str(out)) == 0
    capsys.readouterr()
    assert _run(str(norm_tree), str(out), "--dry-run") == 0
    assert "0 to process, 4 already done" in capsys.readouterr().out
    base = [str(norm_tree), str(out), "--device", "cpu", "--no-progress"]
    assert run_cli(main, [*base, "--dry-run"]) == 0  # default weights: pretrained
    assert "4 to process, 0 already done" in capsys.readouterr().out
    assert run_cli(main, [*base, "--list-missing"]) == 0
    text = capsys.readouterr().out
    assert "missing\ta/x.wav\tmade with weights 'random', not 'facebook/encodec_24khz'" in text
    assert "0 of 4 inputs have a valid output" in text
    assert run_cli(main, [*base, "--weights", "random", "--bandwidth", "12", "--dry-run"]) == 0
    assert "4 to process, 0 already done" in capsys.readouterr().out  # 16 codebooks, not 8
    assert run_cli(main, [*base, "--weights", "random", "--bandwidth", "12", "--list-missing"]) == 0
    assert "has 8 codebooks, 16 requested" in capsys.readouterr().out


def _s2_subprocess(tmp_path: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """s2 with its default (pretrained) weights in a fresh process, with an empty HF_HOME."""
    write(tmp_path / "in" / "a.wav", tone(50, 0.4, 0.1, 24000, 1), 24000)
    full = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and not k.startswith("HF_")}
    full.update(HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO), **env)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "workflow.s2_wav2encodec24", str(tmp_path / "in"),
                           str(tmp_path / "out"), "--device", "cpu"],
                          capture_output=True, text=True, env=full, cwd=REPO, timeout=300)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HTTPS_PROXY": "dead"}], ids=["offline", "dead-proxy"])
def test_no_network_fails_fast_after_saying_it_loads(tmp_path: Path, env: dict) -> None:
    """Issue 13 item 16: a progress line before the codec loads, then the clear error at once
    (a dead proxy used to cost ~25 s of hub retries and a generic error)."""
    from .test_codecs import _closed_port

    if env.get("HTTPS_PROXY") == "dead":
        env = {"HTTPS_PROXY": f"http://127.0.0.1:{_closed_port()}"}
    proc, seconds = _s2_subprocess(tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    loading = [i for i, line in enumerate(lines) if line.startswith("loading codec encodec_24khz (pretrained")]
    error = [i for i, line in enumerate(lines) if line.startswith("error: weights for codec encodec_24khz")]
    assert loading and error and loading[0] < error[0], proc.stderr
    assert "--weights random" in proc.stderr and "huggingface-cli download" in proc.stderr
    assert ("offline mode" if "HF_HUB_OFFLINE" in env else "through the proxy") in proc.stderr
    assert seconds < 120  # imports only; no retries (the old dead-proxy run spent ~25 s in them)
    assert not list((tmp_path / "out").rglob("*.ecdc"))
