"""Every command line of seed 000 (the upstream workflow README), run literally through our console
scripts from a folder laid out like a clone (with ``./paramproducers``) on a messy generated tree.

Only ``python sX.py`` is replaced by the matching ``wf-*`` script. "pretrained" weights come from a
local Hugging Face cache (random weights in ``save_pretrained`` layout, ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workflow.synth import tone

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "s1_audio_normalize.py": "wf-audio-normalize",
    "s2_wav2encodec24.py": "wf-wav2encodec24",
    "s3_sidecar_init.py": "wf-sidecar-init",
    "s4_sidecar_add.py": "wf-sidecar-add",
    "s5_build_dataset_from_folder.py": "wf-build-dataset",
    "sidecar_audit.py": "wf-sidecar-audit",
}
# the seed beside the checkout (`../shared/seeds/`), where there is one; CI clones have none
SEED = REPO.parent / "shared" / "seeds" / "000_6fa73b5c1a517af4.txt"

# (relative path, pitch, amp): parameterised names, nested folders, a space, non-ASCII.
PARAM = [
    ("set a/tone_pitch_60.00_amp_0.50.wav", 60.0, 0.50),
    ("set a/deeper/tone_pitch_64.50_amp_0.25.wav", 64.5, 0.25),
    ("sätze/tone_pitch_55.00_amp_0.75.wav", 55.0, 0.75),
    ("tone_pitch_70.25_amp_0.40.wav", 70.25, 0.40),
]
# names with no parameters (the seed regex finds nothing, or junk)
PLAIN = ["odd/chirp_100_to_4000.wav", "odd/sine_440.wav"]
CORRUPT = "broken/tone_pitch_50.00_amp_0.50.wav"
SECONDS = 0.8
HUB_SHA = "0123456789abcdef0123456789abcdef01234567"


def seed_commands() -> list[str]:
    """The seed's ``python ...`` lines, in order (checked against the list used below)."""
    return [ln.strip() for ln in SEED.read_text().splitlines() if ln.strip().startswith("python ")]


def argv(seed_line: str) -> list[str]:
    words = shlex.split(seed_line)
    assert words[0] == "python" and words[1] in SCRIPTS, seed_line
    return [str(BIN / SCRIPTS[words[1]]), *words[2:]]


def run(seed_line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv(seed_line), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _write_tree(root: Path, corrupt: bool, loop: bool) -> None:
    for i, (rel, pitch, amp) in enumerate(PARAM):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sr = (44100, 22050, 48000, 24000)[i]
        sf.write(p, tone(pitch, amp, SECONDS, sr, 1 + i % 2).T, sr, subtype="PCM_16")
    for rel in PLAIN:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, tone(69.0, 0.3, SECONDS, 24000, 1).T, 24000, subtype="PCM_16")
    if corrupt:
        (root / CORRUPT).parent.mkdir(parents=True, exist_ok=True)
        (root / CORRUPT).write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really")
    if loop:
        (root / "set a" / "up").symlink_to("..")  # a loop: every stage must visit each file once


def _hub_cache(home: Path) -> None:
    """A Hugging Face cache holding facebook/encodec_24khz with random weights."""
    from workflow.codecs import load_codec

    repo = home / "hub" / "models--facebook--encodec_24khz"
    snap = repo / "snapshots" / HUB_SHA
    load_codec("encodec_24khz", "random", device="cpu").model.save_pretrained(snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HUB_SHA)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("hf_home")
    _hub_cache(home)
    e = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    e.pop("HF_HUB_CACHE", None)
    return e


def _clone(root: Path) -> Path:
    """A folder laid out like a clone of the repository: the seed runs from there."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "paramproducers", root / "paramproducers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_seed_lists_the_commands_we_run() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not beside this checkout")
    assert seed_commands() == STEP_LINES + TYPICAL_LINES


STEP_LINES = [
    "python s1_audio_normalize.py ./raw_wavs ./normalized_wavs   --target-rms 0.15   --window-ms 250",
    "python s1_audio_normalize.py ./music ./normed --target-rms 0.05",
    "python s2_wav2encodec24.py ./normed ./ecdc_out   --bandwidth 6.0   --recursive   --verify",
    "python s2_wav2encodec24.py ./normed ./ecdc_out --dry-run",
    "python s3_sidecar_init.py   --audio-root ./ecdc_out   --cond-root ./params   --manifest-csv ./manifest.csv",
    "python s4_sidecar_add.py   --audio-root ./ecdc_out   --cond-root ./params   --producers-dir ./paramproducers"
    "   --producer const --producer lin   --const scene_id=7   --lin gain=0:1   --mode append --create-missing",
    "python s4_sidecar_add.py --producers-dir ./paramproducers --list-producers",
    "python s4_sidecar_add.py --producers-dir ./paramproducers --producer const --help",
    "python s5_build_dataset_from_folder.py ./ecdc_out ./hf_dataset   --split train   --tokens-subdir tokens"
    "   --materialize link   --verify",
    "python sidecar_audit.py   --audio-root ./ecdc_out   --cond-root ./params   --expect-fps 75"
    "   --expect-dtype float16   --require tempo,bpm,key   --verify-ranges",
]
TYPICAL_LINES = [
    "python s1_audio_normalize.py ./raw ./norm",
    "python s2_wav2encodec24.py ./norm ./ecdc --recursive --verify",
    "python s3_sidecar_init.py --audio-root ./ecdc --cond-root ./params",
    "python s4_sidecar_add.py --audio-root ./ecdc --cond-root ./params   --producers-dir ./paramproducers"
    " --producer from_filename   --from-filename --filename-regex '_(?P<name>\\w+)_(?P<value>-?\\d+(\\.\\d+)?)'",
    "python s5_build_dataset_from_folder.py ./ecdc ./hf_dataset   --split train --materialize link --verify",
    "python sidecar_audit.py --audio-root ./ecdc --cond-root ./params",
]


def _peak_rms(path: Path) -> float:
    from workflow.audio import peak_windowed_rms, read_audio

    audio, sr = read_audio(path)
    assert sr == 24000 and audio.shape[0] == 1, path
    return peak_windowed_rms(audio, sr, 250.0)


def _outputs(folder: Path, suffix: str) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(f"*{suffix}"))


def _stems(rels) -> list[str]:
    return sorted(str(Path(r).with_suffix("")) for r in rels)


GOOD_STEMS = _stems([r for r, *_ in PARAM] + PLAIN)


@pytest.fixture(scope="module")
def steps(tmp_path_factory, env) -> dict:
    """The seed's step-by-step sections, in order, in one clone-like folder."""
    root = _clone(tmp_path_factory.mktemp("steps") / "EncHF_Dataset")
    _write_tree(root / "raw_wavs", corrupt=True, loop=True)
    _write_tree(root / "music", corrupt=False, loop=False)
    res = {"root": root}
    for i, line in enumerate(STEP_LINES):
        res[i] = run(line, root, env)
        if i == 5:  # the same s4 line again: append keeps what is there
            res["s4_again"] = run(line, root, env)
    return res


def _ok(res: subprocess.CompletedProcess, code: int = 0) -> str:
    out = res.stdout + res.stderr
    assert res.returncode == code, f"exit {res.returncode}\n{out}"
    return out


def test_s1_normalises_reports_the_corrupt_file_and_visits_each_file_once(steps) -> None:
    out = _ok(steps[0], 1)
    assert "broken/tone_pitch_50.00_amp_0.50.wav" in out
    norm = steps["root"] / "normalized_wavs"
    assert _stems(_outputs(norm, ".wav")) == GOOD_STEMS  # the loop `set a/up -> ..` adds nothing
    for rel in _outputs(norm, ".wav"):
        assert abs(_peak_rms(norm / rel) - 0.15) < 2e-3, rel
    _ok(steps[1])
    for rel in _outputs(steps["root"] / "normed", ".wav"):
        assert abs(_peak_rms(steps["root"] / "normed" / rel) - 0.05) < 1e-3, rel


def test_s2_encodes_with_the_cached_pretrained_weights_and_dry_run_has_nothing_left(steps) -> None:
    from workflow.ecdc import read_ecdc

    _ok(steps[2])
    out_dir = steps["root"] / "ecdc_out"
    assert _stems(_outputs(out_dir, ".ecdc")) == GOOD_STEMS
    for rel in _outputs(out_dir, ".ecdc"):
        tok = read_ecdc(out_dir / rel)
        assert tok.codes.shape == (8, tok.num_frames)  # 6 kbps = 8 codebooks
        assert tok.num_frames == -(-tok.header.audio_length // 320)
        assert HUB_SHA in json.dumps(tok.header.meta)
    assert "0 to process, 6 already done" in _ok(steps[3])  # same (cached) weights: nothing left


def test_s3_writes_empty_sidecars_under_cond_root_and_the_manifest(steps) -> None:
    from workflow.sidecar import read_sidecar

    _ok(steps[4])
    params = steps["root"] / "params"
    with open(steps["root"] / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and len(_outputs(params, ".cond.npy")) == 6
    from workflow.ecdc import read_ecdc_header

    for row in rows:  # the manifest records each pair's alignment with its tokens
        frames = read_ecdc_header(steps["root"] / "ecdc_out" / row["rel_ecdc"]).num_frames
        assert int(row["frames"]) == frames == read_sidecar(params / row["rel_cond"]).frames


def test_s4_const_and_lin_fill_every_sidecar_and_a_rerun_is_a_no_op(steps) -> None:
    from workflow.sidecar import read_sidecar

    _ok(steps[5])
    _ok(steps["s4_again"])
    params = steps["root"] / "params"
    for rel in _outputs(params, ".cond.npy"):
        sc = read_sidecar(params / rel)
        assert sc.names == ["scene_id", "gain"], rel
        np.testing.assert_array_equal(sc.column("scene_id"), 7)
        np.testing.assert_allclose(sc.column("gain")[[0, -1]], [0.0, 1.0], atol=1e-3)
        assert np.all(np.diff(sc.column("gain").astype(np.float64)) >= 0)


def test_s4_lists_the_producers_of_the_folder_and_a_producers_help(steps) -> None:
    listed = _ok(steps[6])
    for name in ("const", "lin", "from_filename", "from_audio", "from_csv"):
        assert re.search(rf"^\s*{name}\b", listed, re.M), listed
    assert "--const" in _ok(steps[7])


def test_s5_finds_the_cond_root_sidecars_and_builds_every_row(steps) -> None:
    import datasets

    from workflow import hfdata
    from workflow.sidecar import read_sidecar

    _ok(steps[8])
    ds_dir = steps["root"] / "hf_dataset"
    rows = datasets.load_from_disk(str(ds_dir))["train"]
    assert sorted(rows["id"]) == GOOD_STEMS
    for row in rows:
        assert row["cond"] is not None, row["id"]
        sc = read_sidecar(hfdata.resolve_path(ds_dir, row["cond"]))
        assert sc.names == ["scene_id", "gain"]
        assert hfdata.resolve_path(ds_dir, row["audio"]).exists()


def test_audit_names_the_required_features_that_are_missing(steps) -> None:
    out = steps[9].stdout + steps[9].stderr
    assert steps[9].returncode != 0, out
    for name in ("tempo", "bpm", "key"):
        assert name in out


@pytest.fixture(scope="module")
def typical(tmp_path_factory, env) -> dict:
    """The seed's Typical End-to-End Example on a mixed tree (parameterised and plain names)."""
    root = _clone(tmp_path_factory.mktemp("typical") / "EncHF_Dataset")
    _write_tree(root / "raw", corrupt=True, loop=True)
    res = {"root": root}
    from workflow.sidecar import read_sidecar

    for i, line in enumerate(TYPICAL_LINES[:4]):
        res[i] = run(line, root, env)
    params = root / "params"
    res["after_seed_s4"] = {rel: read_sidecar(params / rel).names for rel in _outputs(params, ".cond.npy")}
    # the README's mixed-tree s4 example, with this tree's folders
    readme = _readme_mixed_tree_s4().replace("tokens/", "./ecdc") + " --cond-root ./params"
    res["readme_s4"] = subprocess.run([str(BIN / "wf-sidecar-add"), *shlex.split(readme)[1:]], cwd=root,
                                      env=env, capture_output=True, text=True, timeout=600)
    # the fix s4 printed (the seed line plus flags): a no-op now, append keeps what is there
    out = res[3].stdout + res[3].stderr
    fixes = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("wf-sidecar-add ")]
    res["fix"] = fixes
    if fixes:
        res["fix_run"] = subprocess.run([str(BIN / "wf-sidecar-add"), *shlex.split(fixes[0])[1:]], cwd=root,
                                        env=env, capture_output=True, text=True, timeout=600)
    for i, line in enumerate(TYPICAL_LINES[4:], start=4):
        res[i] = run(line, root, env)
    return res


def _readme_mixed_tree_s4() -> str:
    """The README's s4 example for a mixed tree (its continuation lines joined)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()
             if ln.startswith("wf-sidecar-add") and "--filename-default" in ln]
    assert lines, "README: the s4 example for a mixed tree is missing"
    return " ".join(lines[0].split())


def test_typical_s1_to_s3_on_the_mixed_tree(typical) -> None:
    assert "broken/tone_pitch_50.00_amp_0.50.wav" in _ok(typical[0], 1)
    for rel in _outputs(typical["root"] / "norm", ".wav"):
        assert abs(_peak_rms(typical["root"] / "norm" / rel) - 0.1) < 1e-3, rel  # the seed's default level
    _ok(typical[1])
    assert _stems(_outputs(typical["root"] / "ecdc", ".ecdc")) == GOOD_STEMS
    _ok(typical[2])


def test_typical_s4_refuses_a_mixed_feature_set_before_writing(typical) -> None:
    res = typical[3]
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "chirp_100_to_4000" in out and "sine_440" in out
    after = typical["after_seed_s4"]
    assert len(after) == 6 and all(names == [] for names in after.values()), after  # nothing written


def test_typical_readme_s4_and_the_printed_fix_work_then_s5_and_audit_pass(typical) -> None:
    import datasets

    from workflow import hfdata
    from workflow.sidecar import read_sidecar

    _ok(typical["readme_s4"])
    params = typical["root"] / "params"
    want = {str(Path(r).with_suffix("")): (p, a) for r, p, a in PARAM}
    for rel in _outputs(params, ".cond.npy"):
        sc = read_sidecar(params / rel)
        assert sorted(sc.names) == ["amp", "pitch"], rel
        pitch, amp = want.get(rel[: -len(".cond.npy")], (0.0, 0.0))  # plain names get the defaults
        np.testing.assert_allclose(sc.column("pitch"), pitch, atol=0.05)  # float16 storage
        np.testing.assert_allclose(sc.column("amp"), amp, atol=1e-3)
    (fix,) = typical["fix"]
    assert shlex.split(fix)[1:] [: len(argv(TYPICAL_LINES[3])) - 1] == argv(TYPICAL_LINES[3])[1:]  # the user's line
    assert "--filename-keys" in fix and "--filename-default" in fix
    _ok(typical["fix_run"])
    _ok(typical[4])
    ds_dir = typical["root"] / "hf_dataset"
    rows = datasets.load_from_disk(str(ds_dir))["train"]
    assert sorted(rows["id"]) == GOOD_STEMS
    assert hfdata.read_dataset_meta(ds_dir)["feature_order"] in (["pitch", "amp"], ["amp", "pitch"])
    assert all(c is not None for c in rows["cond"])
    _ok(typical[5])


def test_typical_dataset_moves_with_its_sources(typical, tmp_path) -> None:
    """The tip "you can copy or publish the dataset directory": moving the whole project keeps
    every row (relative links); the dataset folder alone is made self-contained with `cp -rL`."""
    import datasets

    from workflow import hfdata

    moved = tmp_path / "moved"
    shutil.copytree(typical["root"], moved, symlinks=True)
    rows = datasets.load_from_disk(str(moved / "hf_dataset"))["train"]
    assert all(hfdata.resolve_path(moved / "hf_dataset", r).exists() for r in rows["audio"])
    alone = tmp_path / "alone"
    shutil.copytree(typical["root"] / "hf_dataset", alone, symlinks=False)  # `cp -rL`
    rows = datasets.load_from_disk(str(alone))["train"]
    assert all(hfdata.resolve_path(alone, r).exists() for r in list(rows["audio"]) + list(rows["cond"]))
