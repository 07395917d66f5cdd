"""--launcher local|slurm (workflow/launch.py) through s1's CLI: submitit's local executor runs two
real shard processes; a stand-in sbatch on PATH shows the array script SLURM would get."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from workflow import launch
from workflow.files import shard_of
from workflow.s1_audio_normalize import main as s1_main
from workflow.synth import tone

from .conftest import write

KEYS = ["a.wav", "b.wav", "sub/c.wav", "sub/d.wav"]


def _tree(root: Path) -> Path:
    for i, key in enumerate(KEYS):
        write(root / key, tone(60 + i, 0.3, 0.2, 24000, 1), 24000)
    (root / "sub" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    return root


def _launch_dirs(out: Path) -> list[Path]:
    return sorted((out / launch.LAUNCH_DIR).iterdir(), key=lambda p: p.stat().st_mtime_ns)


@pytest.mark.slow
def test_local_launcher_runs_two_shards_merges_reports_and_resumes(tmp_path: Path, capsys) -> None:
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    argv = [str(src), str(out), "--workers", "1", "--launcher", "local", "--slurm-array", "2",
            "--slurm-time", "10"]
    assert s1_main(argv) == 1  # the corrupt file fails (in its shard), the rest is written
    printed = capsys.readouterr().out
    assert "submitted 2 local task(s)" in printed and "4 done, 0 already done, 1 failed" in printed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == KEYS

    (first,) = _launch_dirs(out)
    merged = json.loads((first / launch.MERGED).read_text())
    assert merged["complete"] and merged["missing_shards"] == []
    assert merged["counts"] == {"ok": 4, "skipped": 0, "failed": 1, "total": 5}
    assert [f["key"] for f in merged["failed"]] == ["sub/corrupt.wav"]
    assert merged["failed"][0]["shard"] == shard_of("sub/corrupt.wav", 2)
    for shard in merged["shards"]:  # each task ran its own shard, and only that
        rep = json.loads(Path(shard["report"]).read_text())
        assert (rep["shard_index"], rep["shard_count"]) == (shard["shard_index"], 2)
        assert all(shard_of(r["key"], 2) == shard["shard_index"] for r in rep["results"])
    plan = json.loads((first / launch.PLAN).read_text())
    assert [j["shard_index"] for j in plan["jobs"]] == [0, 1]
    assert all(Path(j["stdout"]).is_file() for j in plan["jobs"])  # the tasks' logs came back

    # Re-submitting the same command resumes: the written files are skipped.
    assert s1_main(argv + ["--skip-errors"]) == 0
    second = _launch_dirs(out)[-1]
    assert second != first
    merged = json.loads((second / launch.MERGED).read_text())
    assert merged["counts"] == {"ok": 0, "skipped": 4, "failed": 1, "total": 5}


def _fake_slurm(bin_dir: Path) -> Path:
    """A stand-in ``srun`` and an ``sbatch`` that keeps the script it is given (no cluster here)."""
    bin_dir.mkdir()
    kept = bin_dir / "submitted.sbatch"
    scripts = {"srun": "#!/bin/sh\nexit 0\n",
               "sbatch": f"#!/bin/sh\ncp \"$1\" {kept}\necho 'Submitted batch job 4242'\n"}
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    return kept


def test_slurm_launcher_submits_one_array_with_the_resources(tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    kept = _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    rc = s1_main([str(src), str(out), "--launcher", "slurm", "--slurm-array", "3",
                  "--slurm-partition", "gpu", "--slurm-gpus-per-task", "1", "--slurm-cpus-per-task", "8",
                  "--slurm-mem-gb", "32", "--slurm-time", "90", "--slurm-array-parallelism", "2"])
    assert rc == 0
    assert "job 4242" in capsys.readouterr().out
    script = kept.read_text()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --time=90",
                 "#SBATCH --job-name=wf-s1_audio_normalize"):
        assert line in script, line
    (ldir,) = _launch_dirs(out)
    plan = json.loads((ldir / launch.PLAN).read_text())
    assert [j["job_id"] for j in plan["jobs"]] == ["4242_0", "4242_1", "4242_2"]
    assert str(ldir / "logs") in script  # the tasks' logs go to the output folder
    merged = launch.merge_reports(ldir)  # nothing ran: every shard is missing, the exit code says so
    assert merged.missing_shards == [0, 1, 2] and merged.exit_code() == 1


def test_launcher_refusals(tmp_path: Path, monkeypatch, capsys) -> None:
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    base = [str(src), str(out), "--launcher", "local"]
    from workflow.runner import run_cli

    assert run_cli(s1_main, base) == 2  # no --slurm-array
    assert "--slurm-array N" in capsys.readouterr().err
    assert run_cli(s1_main, base + ["--slurm-array", "2", "--shard-index", "1", "--shard-count", "2"]) == 2
    assert "set per task" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no srun: not a SLURM machine
    assert run_cli(s1_main, [str(src), str(out), "--launcher", "slurm", "--slurm-array", "2"]) == 1
    assert "no SLURM on this machine" in capsys.readouterr().err
    assert not (out / launch.LAUNCH_DIR).exists()  # refused before anything was written


@pytest.mark.slow
def test_local_launcher_s3_writes_every_sidecar_and_reports_under_the_token_tree(token_copy) -> None:
    from workflow.s3_sidecar_init import main as s3_main

    tokens = token_copy["tokens"]
    n = len(list(tokens.rglob("*.ecdc")))
    assert s3_main([str(tokens), "--launcher", "local", "--slurm-array", "2"]) == 0
    assert len(list(tokens.rglob("*.cond.npy"))) == n
    (ldir,) = _launch_dirs(tokens)
    merged = json.loads((ldir / launch.MERGED).read_text())
    assert merged["counts"] == {"ok": n, "skipped": 0, "failed": 0, "total": n}
    assert sorted(s["shard_index"] for s in merged["shards"]) == [0, 1]
