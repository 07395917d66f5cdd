"""The seed README's three midigroove commands and upstream notes.txt's command shapes, run as
written on the mini E-GMD (cuda → cpu, random codec weights, tiny step counts / widths, the
offline FAD embedder instead of CLAP); plus the ablation flags and predict from MIDI / .npz."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from midigroove_poc.__main__ import main
from workflow.runner import run_cli

torch.set_num_threads(1)

CKPT = "artifacts/checkpoints/expressivegrid_to_encodec.pt"
SYSTEM = f"encodec:{CKPT}:cache/encodec_acoustic:encodec"


def _csv_with_a_beat_test_split(mini_egmd: dict, path: Path) -> Path:
    """The mini CSV with split ``test`` given to a *beat* performance (the mini test split is a
    fill, which ``--beat-type-only beat`` drops) and ``validation`` to another."""
    rows = list(csv.DictReader(open(mini_egmd["csv"], newline="")))
    new_split = {"drummer2/session2/5": "test", "drummer1/session1/2": "validation"}
    for r in rows:
        r["split"] = new_split.get(r["id"], r["split"])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _argv(text: str) -> list[str]:
    import shlex
    return shlex.split(text.replace("\\\n", " "))


@pytest.fixture(scope="module")
def seed_run(mini_egmd, tmp_path_factory):
    """Seed command 1 (build the cache) and 2 (train) in a fresh working directory."""
    work = tmp_path_factory.mktemp("seed")
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    mp.setenv("EGMD_CSV", str(_csv_with_a_beat_test_split(mini_egmd, work / "e-gmd.csv")))
    mp.setenv("EGMD_ROOT", str(mini_egmd["root"]))
    try:
        build = _argv("""drumgrid train \\
          --cache-dir cache/encodec_acoustic \\
          --encoder-model encodec \\
          --precache --precache-only \\
          --beat-type-only beat \\
          --kit-category-only "Acoustic Kit" \\
          --encode-device cpu --num-workers 0 --seed 0 \\
          --beats-per-chunk 4 --hop-beats 4""") + ["--weights", "random", "--no-progress"]
        assert run_cli(main, build) == 0
        train = _argv(f"""expressivegrid train \\
          --cache cache/encodec_acoustic \\
          --device cpu \\
          --save {CKPT} \\
          --encoder-model encodec \\
          --steps 3 --log-every 300""") + ["--d-model", "32", "--n-layers", "1", "--n-heads", "2"]
        assert run_cli(main, train) == 0
        yield work
    finally:
        mp.undo()


def test_seed_cache_and_training(seed_run) -> None:
    from midigroove_poc.cache import load_cache, resolve_cache

    cache = resolve_cache(seed_run / "cache/encodec_acoustic")
    dd, meta = load_cache(cache)
    assert meta["codec"] == "encodec_32khz" and meta["num_codebooks"] == 4 and meta["fps"] == 50
    assert meta["kits"] == ["Acoustic Kit"] and set(dd["train"]["beat_type"]) == {"beat"}
    assert len(dd["test"]) > 0 and len(dd["validation"]) > 0
    assert (seed_run / CKPT).is_file()


def test_seed_eval(seed_run, capsys) -> None:
    argv = _argv(f"""eval \\
      --split test --intersection --max-items 0 \\
      --device cpu --decode-device cpu \\
      --audio-metrics --add-oracle \\
      --pred-dir artifacts/pred --pred-include-ref --save-preds 128 \\
      --system {SYSTEM} \\
      --out-dir artifacts/eval/example_run""")
    assert run_cli(main, argv) == 0
    out = seed_run / "artifacts/eval/example_run"
    summary = json.loads((out / "summary.json").read_text())["systems"]
    assert summary["encodec:oracle"]["acc"] == 1.0 and "onset_f1" in summary["encodec"]
    n = summary["encodec"]["items"]
    wavs = sorted(p.name for p in (out / "wavs").iterdir())  # the saved predictions + references
    assert len([w for w in wavs if w.startswith("encodec_0")]) == n
    assert len([w for w in wavs if w.startswith("encodec_oracle_")]) == n
    assert len([w for w in wavs if w.startswith("ref_")]) == n
    assert len(list((seed_run / "artifacts/pred").glob("*.npy"))) == n
    assert "encodec:oracle" in capsys.readouterr().out


def test_notes_training_shapes(seed_run) -> None:
    """notes.txt: --early-stop-steps, --eval-max-batches 0 / N, --use-kit-name, the big model's
    flags (narrowed), --metrics-out, --include-sustain --include-hh-cc4."""
    shapes = {
        "small.pt": "--early-stop-steps 5000 --eval-max-batches 0",
        "allkits.pt": "--use-kit-name --early-stop-steps 5000 --eval-max-batches 0",
        "big.pt": "--use-kit-name --early-stop-steps 5000 --eval-max-batches 3000 "
                  "--d-model 48 --n-layers 1 --n-heads 12 --batch-size 8",
        "lanes.pt": "--eval-max-batches 0 --metrics-out artifacts/metrics/lanes.csv "
                    "--include-sustain --include-hh-cc4",
    }
    for name, extra in shapes.items():
        argv = _argv(f"expressivegrid train --cache cache/encodec_acoustic --device cpu "
                     f"--save artifacts/checkpoints/{name} --encoder-model encodec --steps 2 --log-every 300 "
                     f"{extra}")
        if "--d-model" not in argv:
            argv += ["--d-model", "32", "--n-layers", "1", "--n-heads", "2"]
        assert run_cli(main, argv) == 0, name
        assert (seed_run / "artifacts/checkpoints" / name).is_file()
    rows = list(csv.DictReader(open(seed_run / "artifacts/metrics/lanes.csv")))
    assert rows and rows[-1]["step"] == "2" and float(rows[-1]["val_loss"]) > 0
    assert run_cli(main, _argv("expressivegrid train --cache cache/encodec_acoustic --save x.pt "
                               "--no-sustain --include-sustain")) == 2


def test_eval_max_batches_limits_validation(seed_run) -> None:
    from midigroove_poc.model import CacheDataset
    from midigroove_poc.train import _val_rows
    from training.core.dist import DistInfo

    cache = next((seed_run / "cache/encodec_acoustic").glob("*/cache_meta.json")).parent
    val = CacheDataset(cache, "validation")
    one = DistInfo()
    assert _val_rows(val, one, 0, 1) == list(range(len(val)))
    assert _val_rows(val, one, 1, 1) == [0]


def test_notes_eval_shapes(seed_run) -> None:
    """notes.txt's evals: FAD (offline embedder standing in for CLAP), --keep-preds, --save-preds -1,
    per kit with its CSV and the reference statistics file; the older --fad; --systems-file."""
    (seed_run / "systems.txt").write_text(f"# two systems\n{SYSTEM}\n\n"
                                          f"big:artifacts/checkpoints/big.pt:cache/encodec_acoustic:encodec\n")
    base = "eval --split test --intersection --max-items 0 --device cpu --decode-device cpu --audio-metrics "
    fad = "--fad-fadtk --fadtk-model logmel-stats --fadtk-device cpu "
    argv = _argv(base + fad + "--save-preds 128 --keep-preds --pred-dir artifacts/pred --pred-include-ref "
                 "--systems-file systems.txt --out-dir artifacts/eval/small_one_kit")
    assert run_cli(main, argv) == 0
    summary = json.loads((seed_run / "artifacts/eval/small_one_kit/summary.json").read_text())["systems"]
    assert set(summary) == {"encodec", "big"} and all("fad_logmel-stats" in v for v in summary.values())
    assert any(p.name.startswith("big_") for p in (seed_run / "artifacts/eval/small_one_kit/wavs").iterdir())

    argv = _argv(base + fad + "--fadtk-per-kit --fadtk-per-kit-out fadtk_per_kit.csv --save-preds 0 "
                 f"--system {SYSTEM} --out-dir artifacts/eval/fadtk_per_kit "
                 "--fadtk-ref-stats-out artifacts/fadtk_ref_stats/perkit.npz")
    assert run_cli(main, argv) == 0
    rows = list(csv.DictReader(open(seed_run / "artifacts/eval/fadtk_per_kit/fadtk_per_kit.csv")))
    assert [(r["system"], r["kit"]) for r in rows] == [("encodec", "Acoustic Kit")]
    assert np.isfinite(float(rows[0]["fad"]))
    with np.load(seed_run / "artifacts/fadtk_ref_stats/perkit.npz") as z:
        assert {"mu[encodec]", "cov[encodec]", "n[encodec]", "mu[encodec[Acoustic Kit]]"} <= set(z.files)
        assert z["cov[encodec]"].shape == (64, 64) and int(z["n[encodec]"]) > 0

    argv = _argv(base + f"--fad --fadtk-model logmel-stats --add-oracle --save-preds -1 --pred-dir artifacts/pred "
                 f"--pred-include-ref --system {SYSTEM} --out-dir artifacts/eval/old_fad")
    assert run_cli(main, argv) == 0
    out = seed_run / "artifacts/eval/old_fad"
    n = json.loads((out / "summary.json").read_text())["systems"]["encodec"]["items"]
    assert len(list((out / "wavs").glob("encodec_0*.wav"))) == n  # -1: every prediction


def test_ablation_flags_change_the_model_input(seed_run) -> None:
    from midigroove_poc.grid import EXPRESSIVE_FEATURES
    from midigroove_poc.inputs import InputSpec
    from midigroove_poc.model import CacheDataset, load_model

    argv = _argv("expressivegrid train --cache cache/encodec_acoustic --device cpu --save abl.pt --steps 2 "
                 "--d-model 32 --n-layers 1 --n-heads 2 --no-vel --no-sustain --no-hh-cc4 --no-kit-name")
    assert run_cli(main, argv) == 0
    model, info = load_model(seed_run / "abl.pt")
    kept = [n for n in EXPRESSIVE_FEATURES
            if not n.startswith(("vel_", "sustain_")) and n != "hat_openness"]
    assert info["inputs"] == {"vel": False, "sustain": False, "hh_cc4": False, "kit": False}
    assert model.n_features == len(kept) and info["feature_names"] == kept
    cache = next((seed_run / "cache/encodec_acoustic").glob("*/cache_meta.json")).parent
    full = CacheDataset(cache, "train").batch([0, 1])
    abl = CacheDataset(cache, "train", inputs=InputSpec.from_dict(info["inputs"])).batch([0, 1])
    idx = [EXPRESSIVE_FEATURES.index(n) for n in kept]
    assert torch.equal(abl["grid"], full["grid"][..., idx])
    assert full["grid"][..., [EXPRESSIVE_FEATURES.index(n) for n in EXPRESSIVE_FEATURES if n not in kept]].abs().sum() > 0
    assert torch.equal(abl["codes"], full["codes"])
    # evaluation and prediction feed the ablated model the same columns
    assert run_cli(main, _argv("eval --split test --device cpu --out-dir artifacts/eval/abl "
                               "--system abl:abl.pt:cache/encodec_acoustic")) == 0
    assert run_cli(main, _argv("expressivegrid predict --ckpt abl.pt --out abl.wav")) == 0


def test_no_kit_name_hides_the_kit() -> None:
    from midigroove_poc.inputs import InputSpec

    ids = torch.tensor([0, 1, 1])
    assert torch.equal(InputSpec(kit=False).kit_ids(ids), torch.zeros(3, dtype=torch.long))
    assert torch.equal(InputSpec().kit_ids(ids), ids)


def test_predict_from_midi_npz_and_sampling(seed_run, mini_egmd) -> None:
    from midigroove_poc.grid import EXPRESSIVE_FEATURES
    from midigroove_poc.model import CacheDataset

    midi = next(Path(mini_egmd["root"]).rglob("*_1.midi"))
    codes = {}
    for name, extra in {"greedy": "", "s1": "--sample --temperature 1.0 --topk 0 --seed 1",
                        "s1b": "--sample --temperature 1.0 --topk 0 --seed 1",
                        "s2": "--sample --temperature 1.0 --topk 0 --seed 2",
                        "top1": "--sample --temperature 0.7 --topk 1 --seed 5"}.items():
        argv = _argv(f"expressivegrid predict --ckpt {CKPT} --midi {midi} --kit 'Acoustic Kit' --out {name}.wav "
                     f"--out-codes {name}.npy {extra}")
        assert run_cli(main, argv) == 0, name
        codes[name] = np.load(seed_run / f"{name}.npy")
    audio, sr = sf.read(seed_run / "greedy.wav")
    assert sr == 32000 and abs(audio.shape[0] / sr - codes["greedy"].shape[1] / 50) < 1e-3
    assert codes["greedy"].shape[0] == 4 and codes["greedy"].shape[1] > 150  # the whole file, in chunks
    assert np.array_equal(codes["s1"], codes["s1b"]) and not np.array_equal(codes["s1"], codes["s2"])
    assert np.array_equal(codes["top1"], codes["greedy"])  # top-1 sampling is greedy decoding

    cache = next((seed_run / "cache/encodec_acoustic").glob("*/cache_meta.json")).parent
    item = CacheDataset(cache, "test")[0]
    np.savez(seed_run / "win.npz", grid=item["grid"].numpy(),
             **{k: int(item[k]) for k in ("drummer_id", "kit_id", "style_id")})
    assert item["grid"].shape[1] == len(EXPRESSIVE_FEATURES)
    assert run_cli(main, _argv(f"expressivegrid predict --ckpt {CKPT} --npz win.npz --out w.wav "
                               "--out-codes w.npy")) == 0
    assert run_cli(main, _argv(f"expressivegrid predict --ckpt {CKPT} --split test --index 0 --out c.wav "
                               "--out-codes c.npy")) == 0
    assert np.array_equal(np.load(seed_run / "w.npy"), np.load(seed_run / "c.npy"))  # same window, same codes
    np.savez(seed_run / "bad.npz", x=np.zeros(3))
    assert run_cli(main, _argv(f"expressivegrid predict --ckpt {CKPT} --npz bad.npz --out b.wav")) == 2


def test_oldest_notes_split_flags(mini_egmd) -> None:
    """The oldest notes.txt: --train-csv X --val-csv X --train-split train --val-split validation
    --stratify-clips takes each CSV's own split (not every row twice), and names its own cache."""
    from midigroove_poc.__main__ import _cache_config, _rows, build_parser

    csv_path = str(mini_egmd["csv"])
    base = ["drumgrid", "train", "--train-csv", csv_path, "--dataset-root", str(mini_egmd["root"])]
    old = build_parser().parse_args(base + ["--val-csv", csv_path, "--train-split", "train",
                                            "--val-split", "validation", "--stratify-clips"])
    want = [(r.key, r.split) for r in mini_egmd["rows"] if r.split in ("train", "validation")]
    assert sorted((r.key, r.split) for r in _rows(old)) == sorted(want)
    swapped = build_parser().parse_args(base + ["--val-split", "test"])
    got = {r.key: r.split for r in _rows(swapped)}
    assert {got[r.key] for r in mini_egmd["rows"] if r.split == "test"} == {"validation"}
    assert {got[r.key] for r in mini_egmd["rows"] if r.split == "validation"} == {"test"}
    plain = build_parser().parse_args(base)
    assert _cache_config(plain).splits is None  # the CSV's own splits: the cache name is unchanged
    assert len({_cache_config(a).name for a in (plain, old, swapped)}) == 3


def test_epochs_and_patience(seed_run) -> None:
    from midigroove_poc.model import load_model

    argv = _argv("expressivegrid train --cache cache/encodec_acoustic --device cpu --save ep.pt "
                 "--epochs 2 --early-stop-patience 7 --batch-size 16 --d-model 32 --n-layers 1 --n-heads 2")
    assert run_cli(main, argv) == 0
    args = load_model(seed_run / "ep.pt")[1]["train_args"]
    assert (args["steps"], args["eval_every"], args["early_stop_steps"]) == (2, 1, 7)  # 6 rows: 1 step/epoch
    assert run_cli(main, _argv("expressivegrid train --cache cache/encodec_acoustic --save x.pt "
                               "--early-stop-patience 3")) == 2


def test_input_spec_columns_of_both_grids() -> None:
    from midigroove_poc.grid import DRUM_GRID_FEATURES, EXPRESSIVE_FEATURES
    from midigroove_poc.inputs import InputSpec

    assert InputSpec(vel=False).dropped(DRUM_GRID_FEATURES) == [n for n in DRUM_GRID_FEATURES if n.startswith("vel_")]
    assert InputSpec(sustain=False, hh_cc4=False).dropped(DRUM_GRID_FEATURES) == []
    assert InputSpec(hh_cc4=False).dropped(EXPRESSIVE_FEATURES) == ["hat_openness"]
    grid = np.arange(2 * len(EXPRESSIVE_FEATURES), dtype=np.float32).reshape(2, -1)
    out = InputSpec(sustain=False).select(grid, EXPRESSIVE_FEATURES)
    assert out.shape == (2, len(EXPRESSIVE_FEATURES) - 4) and "sustain_crash" not in InputSpec(sustain=False).kept_names(
        EXPRESSIVE_FEATURES)
    assert InputSpec.from_dict(None) == InputSpec() and InputSpec.from_dict({"vel": False, "x": 1}) == InputSpec(vel=False)
