"""wf-inspect on real datasets built by s5: the summary, the rows, and --verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow import inspect_dataset
from workflow.hfdata import load_dataset_dir, resolve_path
from workflow.runner import run_cli

from .test_torchdata import build_datasets

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built(token_tree, tmp_path_factory) -> dict[str, Path]:
    return build_datasets(token_tree, tmp_path_factory)


def test_show_prints_shapes_features_and_ranges(built, capsys):
    assert inspect_dataset.main(["--hf-ds", str(built["embedded"]), "--split", "train", "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "codec: encodec_24khz" in out and "codebooks: 8" in out and "embedded: yes" in out
    assert "train: 7 rows" in out
    for name in ("ramp", "level", "const"):
        assert name in out
    ramp = next(line for line in out.splitlines() if line.strip().startswith("ramp ") and "midi" in line)
    assert ramp.split()[:4] == ["ramp", "midi", "0", "127"] and "producer" in ramp
    assert out.count("codes [8, ") == 3 and "cond [" in out
    assert "ramp: 30..67" in out  # a row's raw values (0.5 * (60 .. 134))


def test_verify_passes_then_catches_a_deleted_token_file(built, tmp_path, capsys):
    assert inspect_dataset.main(["--hf-ds", str(built["plain"]), "--verify", "--show", "0", "--no-progress"]) == 0
    assert "verify: 7 rows OK, 0 failed" in capsys.readouterr().out

    # A private copy whose token links point at a private copy of the tokens.
    shutil.copytree(built["tokens"], tmp_path / "tokens")
    ds_dir = tmp_path / "plain"
    shutil.copytree(built["plain"], ds_dir, symlinks=True)
    row = load_dataset_dir(ds_dir)["train"][2]
    victim = resolve_path(ds_dir, row["audio"])
    assert victim.exists()
    victim.unlink()
    rc = run_cli(inspect_dataset.main, ["--hf-ds", str(ds_dir), "--verify", "--show", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "verify: 6 rows OK, 1 failed" in out
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and row["id"] in failed[0] and victim.name in failed[0]


def test_cli_as_a_file_and_errors(built, tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "workflow" / "inspect_dataset.py"), str(built["plain"]),
                          "--show", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "features (3;" in res.stdout and "split 'train' (files)" in res.stdout
    assert run_cli(inspect_dataset.main, ["--hf-ds", str(tmp_path / "nothing")]) == 1
    assert run_cli(inspect_dataset.main, ["--hf-ds", str(built["plain"]), "--split", "nope"]) == 2


def test_help_does_not_import_torch():
    """`wf-inspect --help` answers without importing torch (it took ~19 s with torch)."""
    code = ("import sys\nfrom workflow import inspect_dataset\ntry:\n"
            "    inspect_dataset.main(['--help'])\nexcept SystemExit as exc:\n"
            "    assert exc.code == 0\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert "--source" in out.stdout and "{auto,embedded,files}" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_verify_on_a_dataset_copied_without_its_sources_says_how_to_fix(token_copy, capsys):
    """Issue 13 item 6: `cp -r` of a link dataset alone breaks every row; --verify says why and
    gives commands that fix it."""
    from workflow.hfdata import build_dataset

    src = token_copy["root"] / "proj"
    src.mkdir()
    shutil.move(str(token_copy["tokens"]), str(src / "ecdc"))
    build_dataset(src / "ecdc", src / "hf_dataset", workers=1)
    elsewhere = token_copy["root"] / "far" / "away"
    shutil.copytree(src / "hf_dataset", elsewhere, symlinks=True)  # what `cp -r` does
    rc = run_cli(inspect_dataset.main, [str(elsewhere), "--verify", "--show", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "verify: 0 rows OK, 7 failed" in out
    assert "how to fix" in out and "7 link(s) here point at nothing" in out
    assert "it expects ../ecdc" in out and "--materialize copy" in out and "cp -rL" in out
    shutil.copytree(src / "hf_dataset", token_copy["root"] / "self", symlinks=False)  # `cp -rL`
    assert run_cli(inspect_dataset.main, [str(token_copy["root"] / "self"), "--verify", "--show", "0",
                                          "--no-progress"]) == 0
