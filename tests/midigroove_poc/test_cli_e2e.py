"""python -m midigroove_poc end to end on a mini E-GMD (MIDI + real GM drum sounds FluidSynth rendered
from it) with a random-weight EnCodec: cache (with resume), training, predict, eval, listening."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midigroove_poc.__main__ import main
from workflow.runner import run_cli

CODEC = ["--codec", "encodec_24khz", "--weights", "random", "--bandwidth", "1.5", "--encode-device", "cpu",
         "--num-workers", "2", "--no-progress"]
TINY = ["--device", "cpu", "--batch-size", "4", "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
        "--warmup-steps", "2", "--log-every", "5", "--eval-every", "5"]


@pytest.fixture(scope="module")
def built(mini_egmd_gm, tmp_path_factory) -> dict:
    """A cache built in two goes: the first is interrupted by a missing audio file, the second resumes."""
    work = tmp_path_factory.mktemp("mg")
    root = work / "egmd"
    shutil.copytree(mini_egmd_gm["root"], root)
    csv_path = root / Path(mini_egmd_gm["csv"]).name
    rows = list(csv.DictReader(open(csv_path)))
    victim = root / rows[0]["audio_filename"]
    hidden = victim.with_suffix(".hidden")
    victim.rename(hidden)
    cache_dir = work / "cache"
    args = ["drumgrid", "train", "--precache-only", "--train-csv", str(csv_path), "--dataset-root", str(root),
            "--cache-dir", str(cache_dir), *CODEC]
    assert run_cli(main, args) == 1  # one row fails: the others' parts are kept
    parts = next(cache_dir.glob("*.parts"))
    done_before = {p.name for p in parts.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert len(done_before) == len(rows) - 1
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts.iterdir() if p.name in done_before}
    hidden.rename(victim)
    assert run_cli(main, args) == 0  # resumes: only the missing row is encoded
    caches = [p for p in cache_dir.iterdir() if (p / "cache_meta.json").is_file()]
    assert len(caches) == 1 and not parts.exists()
    return {"work": work, "csv": csv_path, "root": root, "cache": caches[0], "rows": rows, "resumed": mtimes}


def test_cache_content(built) -> None:
    from midigroove_poc.cache import load_cache
    from midigroove_poc.grid import DRUM_GRID_FEATURES, EXPRESSIVE_FEATURES

    dd, meta = load_cache(built["cache"])
    assert meta["codec"] == "encodec_24khz" and meta["num_codebooks"] == 2 and meta["weights"] == "random"
    assert set(dd) == {"train", "validation", "test"} and len(dd["train"]) > 0 and len(dd["test"]) > 0
    feats = dd["train"].features
    assert feats["codes"].feature.feature.dtype == "int16" and feats["grid"].feature.feature.dtype == "float16"
    item = dd["train"].with_format("numpy", columns=["codes", "grid", "drumgrid", "onsets"])[0]
    k, t = item["codes"].shape
    assert k == 2
    assert item["grid"].shape == (t, len(EXPRESSIVE_FEATURES)) and item["drumgrid"].shape == (t, len(DRUM_GRID_FEATURES))
    assert meta["expressive_features"] == list(EXPRESSIVE_FEATURES)
    assert len(item["onsets"]) > 0 and float(np.max(item["onsets"])) < t / 75.0


def test_filters_get_their_own_cache(built, tmp_path) -> None:
    from midigroove_poc.__main__ import _cache_config, build_parser

    def cfg(*extra):
        return _cache_config(build_parser().parse_args(["drumgrid", "train", *CODEC, *extra]))
    names = {cfg().name, cfg("--beat-type-only", "beat").name, cfg("--kit-category-exclude", "Pop Kit").name,
             cfg("--hop-beats", "2").name}
    assert len(names) == 4


def test_train_predict_and_eval(built, tmp_path) -> None:
    cache = built["cache"]
    eg = tmp_path / "eg.pt"
    # --cache takes the --cache-dir folder when it holds one finished cache (the seed's command shape)
    assert main(["expressivegrid", "train", "--cache", str(cache.parent), "--save", str(eg), "--steps", "12", *TINY]) == 0
    assert eg.is_file()
    from midigroove_poc.model import load_model
    assert load_model(eg)[1]["cache_path"] == str(cache.resolve())
    dgs = tmp_path / "dg.pt"
    assert main(["drumgrid", "train", "--train-csv", str(built["csv"]), "--dataset-root", str(built["root"]),
                 "--cache-dir", str(cache.parent), *CODEC, "--save", str(dgs), "--steps", "6", *TINY]) == 0
    wav = tmp_path / "pred.wav"
    assert main(["expressivegrid", "predict", "--ckpt", str(eg), "--cache", str(cache), "--out", str(wav)]) == 0
    audio, sr = sf.read(wav)
    assert sr == 24000 and audio.shape[0] > 24000

    out = tmp_path / "eval"
    assert main(["eval", "--split", "test", "--audio-metrics", "--add-oracle", "--add-random", "--save-preds", "1",
                 "--pred-include-ref", "--out-dir", str(out), "--intersection",
                 "--system", f"eg:{eg}:{cache.parent}:encodec_24khz", "--system", f"dg:{dgs}:{cache}"]) == 0
    full = json.loads((out / "summary.json").read_text())
    assert full["eval_sr"] == 32000  # audio metrics at upstream's rate, not the codec's 24 kHz
    summary = full["systems"]
    assert {"eg", "eg:oracle", "eg:random", "dg", "dg:oracle", "dg:random"} <= set(summary)
    assert summary["eg:oracle"]["acc"] == 1.0
    for key in ("acc", "spectral_convergence", "log_mel_l1", "rms_env_corr", "onset_f1"):
        assert key in summary["eg"], key
    assert "nll" in summary["eg"] and summary["eg"]["ppl"] > 1.0
    items = list(csv.DictReader(open(out / "items.csv")))
    assert len(items) == 6 * summary["eg"]["items"]
    assert (out / "wavs").is_dir() and any(p.name.startswith("ref_") for p in (out / "wavs").iterdir())


def test_cli_help_and_errors(capsys) -> None:
    for argv in (["--help"], ["drumgrid", "train", "--help"], ["expressivegrid", "train", "--help"],
                 ["expressivegrid", "predict", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    helps = capsys.readouterr().out
    for flag in ("--kit-category-exclude", "--precache-only", "--early-stop-steps", "--add-oracle", "--ckpt"):
        assert flag in helps
    assert run_cli(main, ["eval", "--out-dir", "/tmp/x"]) == 2
    assert run_cli(main, ["drumgrid", "train", "--precache-only"]) == 2  # no CSV given


def test_eval_fad_with_the_offline_embedder(built, tmp_path, capsys) -> None:
    cache = built["cache"]
    eg = tmp_path / "eg.pt"
    assert main(["expressivegrid", "train", "--cache", str(cache), "--save", str(eg), "--steps", "4", *TINY]) == 0
    out, stats = tmp_path / "eval", tmp_path / "fadstats"
    argv = ["eval", "--split", "test", "--add-oracle", "--add-random", "--out-dir", str(out), "--fad-fadtk",
            "--fadtk-model", "logmel-stats", "--fadtk-per-kit", "--fad-stats-dir", str(stats),
            "--system", f"eg:{eg}:{cache}"]
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    header = printed.splitlines()[0]
    for col in ("fad_logmel-stats", "fad_inf_logmel-stats", "fad_logmel-stats[Acoustic Kit]",
                "fad_logmel-stats[Pop Kit]"):
        assert col in header, header
    summary = json.loads((out / "summary.json").read_text())["systems"]
    assert "clap" not in json.dumps(summary).lower() and "clap" not in printed.lower()
    for name in ("eg", "eg:oracle", "eg:random"):
        assert np.isfinite(summary[name]["fad_logmel-stats"]) and summary[name]["fad_logmel-stats"] > -1e-6
    cached = sorted(p.name for p in stats.iterdir())
    assert len(cached) == 3 and all(n.startswith("logmel-stats-") for n in cached)  # all kits + one per kit
    mtimes = {p.name: p.stat().st_mtime_ns for p in stats.iterdir()}
    assert main(argv) == 0  # the second run reads the reference statistics back
    assert {p.name: p.stat().st_mtime_ns for p in stats.iterdir()} == mtimes
    assert json.loads((out / "summary.json").read_text())["systems"]["eg"]["fad_logmel-stats"] == \
        pytest.approx(summary["eg"]["fad_logmel-stats"], rel=1e-9)


def test_eval_fad_without_fadtk_says_how_to_install(built, tmp_path, capsys) -> None:
    import importlib.util

    if importlib.util.find_spec("fadtk") is not None:
        pytest.skip("fadtk is installed here")
    rc = run_cli(main, ["eval", "--fad-fadtk", "--out-dir", str(tmp_path / "e"),
                        "--system", f"eg:{tmp_path / 'none.pt'}:{built['cache']}"])
    assert rc == 1 and "pip install fadtk" in capsys.readouterr().err


def test_eval_codec_domain_reference_and_listening(built, tmp_path, capsys) -> None:
    """Against decode(true codes) of the same window the oracle is perfect and random codes are
    clearly worse (a reference taken from another window would spoil the oracle); --save-wavs
    writes reference / oracle / prediction per window and an index.html that links them."""
    import html
    import re
    from urllib.parse import unquote

    cache, eg = built["cache"], tmp_path / "eg.pt"
    assert main(["expressivegrid", "train", "--cache", str(cache), "--save", str(eg), "--steps", "2", *TINY]) == 0
    name = 'e<g>&"1'
    capsys.readouterr()
    out, listen = tmp_path / "eval", tmp_path / "listen"
    assert main(["eval", "--split", "test", "--audio-metrics", "--add-oracle", "--add-random", "--out-dir", str(out),
                 "--save-wavs", str(listen), "--system", f"{name}:{eg}:{cache}"]) == 0
    printed = capsys.readouterr().out
    assert "codec_onset_f1" in printed.splitlines()[0] and f"listen: {listen / 'index.html'}" in printed
    items = list(csv.DictReader(open(out / "items.csv")))
    windows = {(r["row_key"], r["window_index"]) for r in items}
    assert len(windows) >= 2 and len({r["row_key"] for r in items}) == 2  # both kits of the test performance
    by = {kind: [r for r in items if r["system"] == kind] for kind in (name, f"{name}:oracle", f"{name}:random")}
    for r in by[f"{name}:oracle"]:  # every window on its own: a mixed-up reference is not perfect
        assert float(r["codec_spectral_convergence"]) < 1e-6, r
        assert float(r["codec_onset_f1"]) == 1.0 and float(r["codec_onset_n_ref"]) > 0, r
    rand_sc = [float(r["codec_spectral_convergence"]) for r in by[f"{name}:random"]]
    rand_f1 = [float(r["codec_onset_f1"]) for r in by[f"{name}:random"]]
    # measured: spectral convergence 0.72-0.74, onset F1 0.89-0.91 (decoded noise has dense onsets)
    assert min(rand_sc) > 0.5 and max(rand_f1) < 0.97, (rand_sc, rand_f1)

    page = (listen / "index.html").read_text()
    assert html.escape(name) in page and name not in page  # the system name is escaped
    links = re.findall(r'src="([^"]+)"', page)
    assert len(links) == 4 * len(windows)  # reference, oracle, prediction, random per window
    for link in links:
        assert not link.startswith(("/", "file:")) and (listen / unquote(html.unescape(link))).is_file(), link
    first = sorted((listen / "wavs").iterdir())[0]
    assert sorted(p.name for p in first.iterdir()) == ["oracle.wav", "prediction.wav", "random.wav", "reference.wav"]
    ref, sr = sf.read(first / "reference.wav")
    oracle, sr2 = sf.read(first / "oracle.wav")
    assert sr == sr2 == 24000 and ref.shape == oracle.shape and np.abs(ref).max() > 0.01
    assert "codec_onset_f1" in page and "spectral_convergence" in page
