"""s5 (wf-build-dataset) through its CLI on a real token tree: exit codes, output, s3/s4 → s5."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np

from workflow import ecdc, hfdata, sidecar
from workflow.files import discover, relative_key
from workflow.runner import run_cli
from workflow.s5_build_dataset_from_folder import main as s5

REPO = Path(__file__).resolve().parents[2]
Q = ["--no-progress", "--workers", "2"]


def test_runs_as_script_module_and_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    for cmd in ([sys.executable, str(REPO / "workflow" / "s5_build_dataset_from_folder.py"), "--help"],
                [sys.executable, "-m", "workflow.s5_build_dataset_from_folder", "--help"],
                [str(Path(sys.executable).parent / "wf-build-dataset"), "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        for flag in ("--split-ratios", "--materialize", "--embed", "--cond-root", "--wav-root",
                     "--verify", "--max-files", "--tokens-subdir", "--skip-errors"):
            assert flag in res.stdout


def test_s3_s4_then_s5_end_to_end(token_copy, capsys) -> None:
    """Real sidecars from s3 + s4 (kept in a separate --cond-root), then one s5 call with
    split ratios, embedding, wavs and verification."""
    from workflow.s3_sidecar_init import main as s3
    from workflow.s4_sidecar_add import main as s4

    tokens, cond = token_copy["tokens"], token_copy["root"] / "cond"
    assert s3(["--audio-root", str(tokens), "--cond-root", str(cond), "--no-progress"]) == 0
    assert s4(["--audio-root", str(tokens), "--cond-root", str(cond),
               "--producer", "from_filename", "--filename-keys", "pitch",
               "--producer", "lin", "--lin", "ramp=0:1", "--no-progress"]) == 0
    out = token_copy["root"] / "dataset"
    rc = s5([str(tokens), str(out), "--cond-root", str(cond), "--wav-root", str(token_copy["norm"]),
             "--split-ratios", "train=0.6,valid=0.2,test=0.2", "--seed", "1", "--embed", "--verify", *Q])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "RANDOM codec weights" in text and "load with: datasets.load_from_disk" in text

    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "valid", "test"} and sum(d.num_rows for d in dd.values()) == 7
    meta = hfdata.read_dataset_meta(out)
    assert meta["feature_order"] == ["pitch", "ramp"]
    assert meta["features"]["pitch"]["producer"] == "from_filename"
    assert meta["features"]["ramp"]["producer"] == "lin"
    card = (out / "README.md").read_text()
    assert "| `ramp` |" in card and "| `pitch` |" in card
    for split, ds in dd.items():
        arrow = ds.with_format("arrow")
        for i, r in enumerate(ds.select_columns(["id", "cond", "wav"]).to_list()):
            got = hfdata.arrow_row_to_numpy(arrow[i])
            assert np.array_equal(got["codes"], ecdc.read_ecdc(tokens / f"{r['id']}.ecdc").codes)
            want = sidecar.read_sidecar(cond / f"{r['id']}.cond.npy").values
            assert np.array_equal(got["cond_values"], want)
            assert hfdata.resolve_path(out, r["wav"]).is_file()
            assert (out / r["cond"]).is_symlink()


def test_problem_files_exit_1_unless_skip_errors(token_copy, capsys) -> None:
    tokens = token_copy["tokens"]
    bad = discover(tokens, [".ecdc"])[2]
    bad.write_bytes(bad.read_bytes()[:40])
    out = token_copy["root"] / "ds"
    assert s5([str(tokens), str(out), *Q]) == 1
    text = capsys.readouterr().out
    assert "1 file(s) left out" in text and relative_key(bad, tokens) in text
    assert datasets.load_from_disk(str(out))["train"].num_rows == 6  # written, the bad one listed
    assert s5([str(tokens), str(out), "--skip-errors", *Q]) == 0
    skipped = hfdata.read_dataset_meta(out)["splits"]["train"]["skipped"]
    assert [s["key"] for s in skipped] == [relative_key(bad, tokens)]
    report = json.loads(next((out / ".reports").glob("*.json")).read_text())
    assert report["counts"]["failed"] == 1


def test_verify_failure_exits_1_and_keeps_the_old_dataset(token_copy, capsys) -> None:
    tokens = token_copy["tokens"]
    out = token_copy["root"] / "ds"
    assert s5([str(tokens), str(out), "--materialize", "none", *Q]) == 0
    gone = discover(tokens, [".ecdc"])[0]
    gone.unlink()
    rc = run_cli(s5, [str(tokens), str(out), "--split", "valid", "--verify", *Q])
    err = capsys.readouterr().err
    assert rc == 1 and "verification found 1 problem" in err and relative_key(gone, tokens)[:-5] in err
    assert list(datasets.load_from_disk(str(out))) == ["train"]


def test_max_files_and_usage_errors(token_copy, capsys) -> None:
    tokens = token_copy["tokens"]
    out = token_copy["root"] / "ds"
    assert s5([str(tokens), str(out), "--max-files", "2", "--split", "valid", *Q]) == 0
    assert datasets.load_from_disk(str(out))["valid"].num_rows == 2
    for argv in ([str(tokens), str(out), "--split", "a", "--split-ratios", "a=1"],
                 [str(tokens), str(out), "--split-ratios", "train"],
                 [str(token_copy["root"] / "missing"), str(out)],
                 [str(tokens), str(tokens / "inside")],
                 [str(tokens), str(out), "--max-files", "0"]):
        assert run_cli(s5, argv + Q) == 2, argv
    assert "error:" in capsys.readouterr().err


def test_seed_chain_cond_root_in_s3_s4_then_s5_without_it(token_copy, capsys) -> None:
    """Issue 13 item 5: the seed's s3/s4 with --cond-root ./params, then s5 without it: every
    row gets its sidecar (found through s3's marker), and s5 says where it found them."""
    from workflow.s3_sidecar_init import main as s3
    from workflow.s4_sidecar_add import main as s4

    tokens, cond = token_copy["tokens"], token_copy["root"] / "params"
    assert s3(["--audio-root", str(tokens), "--cond-root", str(cond), "--no-progress"]) == 0
    assert s4(["--audio-root", str(tokens), "--cond-root", str(cond), "--producer", "lin",
               "--lin", "gain=0:1", "--no-progress"]) == 0
    out = token_copy["root"] / "hf_dataset"
    assert s5([str(tokens), str(out), "--split", "train", "--materialize", "link", "--verify", *Q]) == 0
    text = capsys.readouterr().out
    assert f"sidecars: under {cond}" in text and "NO CONDITIONING" not in text
    ds = hfdata.load_dataset_dir(out)["train"]
    assert ds.num_rows == 7 and all(c is not None for c in ds["cond"])
    assert hfdata.read_dataset_meta(out)["feature_order"] == ["gain"]
    assert hfdata.read_dataset_meta(out)["splits"]["train"]["source"]["cond_root"] == "../params"


def test_no_conditioning_at_all_is_said_loudly(token_copy, capsys) -> None:
    """Issue 13 item 5: sidecars nowhere to be found -> a loud warning naming --cond-root."""
    out = token_copy["root"] / "ds"
    assert s5([str(token_copy["tokens"]), str(out), *Q]) == 0
    text = capsys.readouterr().out
    assert "WARNING: NO CONDITIONING: none of the 7 token files has a sidecar" in text
    assert "--cond-root" in text


def _mixed_tree(tokens: Path) -> list[str]:
    """Sidecars [pitch] on every file, plus junk columns [chirp, to] on the first three."""
    keys = []
    for i, p in enumerate(discover(tokens, [".ecdc"])):
        h = ecdc.read_ecdc_header(p)
        t = h.num_frames
        cols = {"pitch": (np.full(t, 60.0), sidecar.FeatureInfo())}
        if i < 3:
            cols.update(chirp=(np.zeros(t), sidecar.FeatureInfo()), to=(np.ones(t), sidecar.FeatureInfo()))
        sc = sidecar.merge_features(sidecar.empty_sidecar(t, h.fps, relative_key(p, tokens)), cols)
        sidecar.write_sidecar(sidecar.sidecar_path_for(p, tokens), sc)
        keys.append(relative_key(p, tokens))
    return keys


def test_mixed_feature_lists_write_nothing_and_name_a_fix(token_copy, capsys) -> None:
    """Issue 13 item 8 (s5 part): files with different feature lists -> exit 1, no half dataset,
    and the advice names the columns to --drop (and --filename-default) with the real roots."""
    tokens = token_copy["tokens"]
    keys = _mixed_tree(tokens)
    out = token_copy["root"] / "ds"
    rc = run_cli(s5, [str(tokens), str(out), *Q])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "nothing was written" in err
    assert "[pitch]: 4 file(s)" in err and "[pitch, chirp, to]: 3 file(s)" in err
    assert f"wf-sidecar-add --audio-root {tokens} --drop chirp --drop to" in err
    assert "--filename-default chirp=VALUE" in err
    assert keys[0] in err


def test_no_usable_token_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    """Issue 13 item 14: every token file unreadable → one error line naming them, not IndexError."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "a.ecdc").write_bytes(b"not an ecdc file")
    (tokens / "b.ecdc").write_bytes(b"")
    assert run_cli(s5, [str(tokens), str(tmp_path / "ds"), *Q]) == 1
    err = capsys.readouterr().err
    assert "none of the 2 token files" in err and "a.ecdc" in err and "b.ecdc" in err
    assert not (tmp_path / "ds").exists()


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    """Issue 13 item 14: an output folder that cannot be written → one error line, exit 1."""
    import pytest

    if os.geteuid() == 0:
        pytest.skip("root may write into a read-only folder")
    parent = tmp_path / "ro"
    parent.mkdir()
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "a.ecdc").write_bytes(b"not an ecdc file")
    parent.chmod(0o555)
    try:
        assert run_cli(s5, [str(tokens), str(parent / "ds"), *Q]) in (1, 2)
    finally:
        parent.chmod(0o755)
    assert "permission denied" in capsys.readouterr().err
