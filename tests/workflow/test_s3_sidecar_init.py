"""s3 (wf-sidecar-init) end to end on a real token tree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from workflow import sidecar
from workflow.ecdc import write_ecdc
from workflow.runner import run_cli
from workflow.s3_sidecar_init import main as s3
from workflow.s4_sidecar_add import main as s4

Q = ["--no-progress"]


def _ecdcs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.ecdc"))


def _manifest(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _report(root: Path) -> dict:
    return json.loads(sorted((root / ".reports").glob("s3_sidecar_init-*.json"))[-1].read_text())


def test_skeletons_json_and_manifest(token_copy) -> None:
    tok = token_copy["tokens"]
    man = token_copy["root"] / "manifest.csv"
    assert s3(["--audio-root", str(tok), "--manifest-csv", str(man)] + Q) == 0
    keys = _ecdcs(tok)
    assert len(keys) == 7
    for key in keys:
        npy = tok / key.replace(".ecdc", ".cond.npy")
        arr = np.load(npy)
        assert arr.shape == (75, 0) and arr.dtype == np.float16
        meta = json.loads(npy.with_name(npy.name.replace(".npy", ".json")).read_text())
        assert meta["schema_version"] == 2 and meta["frames"] == 75 and meta["fps"] == 75.0
        assert meta["source"] == key and meta["features"] == {}
    assert not list(tok.rglob("*.cond.cond.json"))
    rows = _manifest(man)
    assert list(rows[0]) == ["rel_ecdc", "rel_cond", "frames", "D", "fps", "codebooks"]
    assert [r["rel_ecdc"] for r in rows] == keys
    for r in rows:
        assert r["rel_cond"] == r["rel_ecdc"].replace(".ecdc", ".cond.npy")
        assert (r["frames"], r["D"], float(r["fps"]), r["codebooks"]) == ("75", "0", 75.0, "8")
    assert _report(tok)["counts"] == {"ok": 7, "skipped": 0, "failed": 0, "total": 7}


def test_fps_frames_and_codebooks_come_from_the_header(tmp_path: Path) -> None:
    """A 16 kHz codec at 50 fps with 4 codebooks: nothing in s3 assumes EnCodec's 75 fps."""
    root = tmp_path / "tok"
    codes = np.random.default_rng(0).integers(0, 1024, (4, 50)).astype(np.int16)
    write_ecdc(root / "a" / "x.ecdc", codes, model="toy_codec", audio_length=16000, bits=10,
               extra={"sr": 16000, "hop": 320, "fps": 50.0})
    man = tmp_path / "m.csv"
    assert s3(["--audio-root", str(root), "--manifest-csv", str(man), "--dtype", "float32"] + Q) == 0
    (row,) = _manifest(man)
    assert (row["frames"], row["D"], float(row["fps"]), row["codebooks"]) == ("50", "0", 50.0, "4")
    sc = sidecar.read_sidecar(root / "a" / "x.cond.npy")
    assert sc.values.shape == (50, 0) and sc.fps == 50.0 and sc.dtype == "float32"


def test_rerun_keeps_s4_features_and_overwrite_wipes_them(token_copy) -> None:
    tok = token_copy["tokens"]
    man = token_copy["root"] / "m.csv"
    assert s3(["--audio-root", str(tok)] + Q) == 0
    assert s4(["--audio-root", str(tok), "--producer", "const", "--const", "gain=0.5"] + Q) == 0
    assert s3(["--audio-root", str(tok), "--manifest-csv", str(man)] + Q) == 0
    assert _report(tok)["counts"]["skipped"] == 7
    kick = tok / "drums/kick/kick_vel_40_pitch_36.5.cond.npy"
    sc = sidecar.read_sidecar(kick)
    assert sc.names == ["gain"] and np.all(sc.column("gain") == 0.5)
    assert {r["D"] for r in _manifest(man)} == {"1"}  # skipped files are in the manifest too

    assert s3(["--audio-root", str(tok), "--overwrite", "--manifest-csv", str(man)] + Q) == 0
    sc = sidecar.read_sidecar(kick)
    assert sc.names == [] and sc.values.shape == (75, 0)
    assert {r["D"] for r in _manifest(man)} == {"0"}


def test_cond_root_is_mirrored_and_may_sit_inside_the_tokens(token_copy) -> None:
    tok, root = token_copy["tokens"], token_copy["root"]
    before = sorted(p.relative_to(tok).as_posix() for p in tok.rglob("*") if ".reports" not in p.parts)
    cond = root / "cond"
    man = cond / "manifest.csv"
    assert s3(["--audio-root", str(tok), "--cond-root", str(cond), "--manifest-csv", str(man)] + Q) == 0
    after = sorted(p.relative_to(tok).as_posix() for p in tok.rglob("*") if ".reports" not in p.parts)
    assert after == sorted(before + [".wf-sidecars.json"])  # only the marker saying where they went
    for key in _ecdcs(tok):
        assert (cond / key.replace(".ecdc", ".cond.npy")).is_file()
        assert (cond / key.replace(".ecdc", ".cond.json")).is_file()
    assert {r["rel_cond"] for r in _manifest(man)} == {k.replace(".ecdc", ".cond.npy") for k in _ecdcs(tok)}
    assert list((cond / ".reports").glob("s3_sidecar_init-*.json"))

    inner = tok / "cond"  # a cond root inside the audio root is fine for s3
    assert s3(["--audio-root", str(tok), "--cond-root", str(inner)] + Q) == 0
    assert len(list(inner.rglob("*.cond.npy"))) == 7


def test_frame_mismatch_with_features_is_reported_not_wiped(token_copy) -> None:
    tok = token_copy["tokens"]
    assert s3(["--audio-root", str(tok)] + Q) == 0
    kick = tok / "drums/kick/kick_vel_40_pitch_36.5.cond.npy"
    old = sidecar.write_sidecar(kick, sidecar.merge_features(
        sidecar.empty_sidecar(10, 75.0, "drums/kick/kick_vel_40_pitch_36.5.ecdc"),
        {"x": (np.arange(10), sidecar.FeatureInfo(producer="test"))}))
    assert s3(["--audio-root", str(tok)] + Q) == 1
    (fail,) = [r for r in _report(tok)["results"] if r["status"] == "failed"]
    assert fail["key"] == "drums/kick/kick_vel_40_pitch_36.5.ecdc"
    assert "10 frames" in fail["error"] and "--overwrite" in fail["error"]
    assert sidecar.read_sidecar(kick).names == old.names  # untouched
    assert s3(["--audio-root", str(tok), "--skip-errors"] + Q) == 0


def test_shards_partition_and_write_their_own_manifests(token_copy) -> None:
    tok = token_copy["tokens"]
    man = token_copy["root"] / "m.csv"
    for i in range(2):
        assert s3(["--audio-root", str(tok), "--shard-index", str(i), "--shard-count", "2",
                   "--manifest-csv", str(man)] + Q) == 0
    parts = [_manifest(man.with_name(f"m-shard{i}of2.csv")) for i in range(2)]
    keys = [r["rel_ecdc"] for p in parts for r in p]
    assert sorted(keys) == _ecdcs(tok) and len(set(keys)) == 7 and all(parts)
    assert not man.exists()


def test_dry_run_writes_nothing_and_bad_root_is_a_usage_error(token_copy, capsys) -> None:
    tok = token_copy["tokens"]
    assert s3(["--audio-root", str(tok), "--dry-run"] + Q) == 0
    assert not list(tok.rglob("*.cond.*"))
    assert "7 to process" in capsys.readouterr().out
    assert run_cli(s3, ["--audio-root", str(tok / "nope")]) == 2
    assert "--audio-root" in capsys.readouterr().err
    assert run_cli(s3, ["--audio-root", str(token_copy["norm"])]) == 2  # no .ecdc there
    assert "wf-wav2encodec24" in capsys.readouterr().err


def test_cond_root_is_recorded_in_the_token_tree_for_s5(token_copy, capsys) -> None:
    """Issue 13 item 5: with --cond-root the token tree remembers where its sidecars went (relative,
    so both trees can move together); without it, or a dry run, no marker is left."""
    from workflow.sidecar_root import MARKER, recorded_cond_root

    tok, cond = token_copy["tokens"], token_copy["root"] / "params"
    assert s3(["--audio-root", str(tok), "--cond-root", str(cond), "--dry-run"] + Q) == 0
    assert not (tok / MARKER).exists()
    assert s3(["--audio-root", str(tok), "--cond-root", str(cond)] + Q) == 0
    assert MARKER in capsys.readouterr().out
    data = json.loads((tok / MARKER).read_text())
    assert data["cond_root"] == "../params" and data["suffix"] == ".cond.npy"
    assert recorded_cond_root(tok) == cond
    moved = token_copy["root"] / "moved"
    moved.mkdir()
    tok.rename(moved / "tokens")
    cond.rename(moved / "params")
    assert recorded_cond_root(moved / "tokens") == moved / "params"  # the relative form wins
    assert s3(["--audio-root", str(moved / "tokens")] + Q) == 0  # sidecars beside: marker goes
    assert not (moved / "tokens" / MARKER).exists() and recorded_cond_root(moved / "tokens") is None
