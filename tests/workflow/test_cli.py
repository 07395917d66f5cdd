"""Every stage script is runnable three ways and has a --help that names its flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module, script, flags", [
    ("s1_audio_normalize", "wf-audio-normalize", ("--target-rms", "--segment-seconds", "--shard-count")),
    ("s2_wav2encodec24", "wf-wav2encodec24", ("--bandwidth", "--list-missing", "--batch-seconds")),
    ("s3_sidecar_init", "wf-sidecar-init", ("--audio-root", "--cond-root", "--manifest-csv")),
    ("s4_sidecar_add", "wf-sidecar-add", ("--producer", "--mode", "--list-producers")),
    ("s5_build_dataset_from_folder", "wf-build-dataset", ("--materialize", "--embed", "--split-ratios")),
    ("sidecar_audit", "wf-sidecar-audit", ("--verify-ranges", "--fail-on", "--plot")),
    ("inspect_dataset", "wf-inspect", ("--hf-ds", "--show", "--verify")),
])
def test_runs_as_script_module_and_console_script(tmp_path: Path, module: str, script: str, flags) -> None:
    """Each stage runs as a file, as ``-m`` and as its console script (workflow/codecs.py must
    not shadow the standard library's codecs when run as a file)."""
    env = {**os.environ, "PYTHONPATH": ""}
    for cmd in ([sys.executable, str(REPO / "workflow" / f"{module}.py"), "--help"],
                [sys.executable, "-m", f"workflow.{module}", "--help"],
                [str(Path(sys.executable).parent / script), "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        assert all(f in res.stdout for f in flags)


@pytest.mark.parametrize("module, folders, seed_form", [
    ("s1_audio_normalize", {"input": "./raw", "output": "./norm"}, ["./raw", "./norm", "--target-rms", "0.05"]),
    ("s2_wav2encodec24", {"input": "./norm", "output": "./ecdc"}, ["./norm", "./ecdc", "--recursive", "--verify"]),
    ("s3_sidecar_init", {"audio_root": "./ecdc"}, ["--audio-root", "./ecdc", "--cond-root", "./params"]),
    ("s4_sidecar_add", {"audio_root": "./ecdc"}, ["--audio-root", "./ecdc", "--cond-root", "./params"]),
    ("s5_build_dataset_from_folder", {"tokens_dir": "./ecdc", "out_dir": "./hf"},
     ["./ecdc", "./hf", "--split", "train", "--materialize", "link", "--verify"]),
    ("sidecar_audit", {"audio_root": "./ecdc"}, ["--audio-root", "./ecdc", "--cond-root", "./params"]),
    ("inspect_dataset", {"hf_ds": "./hf"}, ["--hf-ds", "./hf"]),
])
def test_every_folder_by_position_or_by_name(module: str, folders: dict[str, str], seed_form) -> None:
    """Issue 13 item 17: each CLI takes its folders positionally or by the same flag names
    (--input/--audio-root, --output; --hf-ds for the dataset), the seed's forms included."""
    import importlib

    from workflow.errors import UsageError
    from workflow.runner import parse_args

    build = importlib.import_module(f"workflow.{module}").build_parser
    want = [Path(v) for v in folders.values()]

    def got(argv: list[str]) -> list[Path]:
        args = parse_args(build(), argv)
        return [getattr(args, d) for d in folders]

    assert got(seed_form) == want
    flag = {"input": "--input", "audio_root": "--input", "tokens_dir": "--audio-root",
            "output": "--output", "out_dir": "--hf-ds", "hf_ds": "--hf-ds"}
    named = [x for d, v in folders.items() for x in (flag[d], v)]
    positional = list(folders.values())
    for argv in (named, positional, ["-v", *positional], positional[:1] + ["-v"] + positional[1:],
                 named[:2] + positional[1:], named[2:] + positional[:1]):
        assert got(argv) == want, argv
    with pytest.raises(UsageError, match="one folder too many"):
        parse_args(build(), [*named, "./other"])
    if module != "s4_sidecar_add":  # s4 needs no folder for --list-producers
        with pytest.raises(UsageError, match="pass it as an argument or with --"):
            parse_args(build(), [])
