"""The notebook-only steps: switchable shell steps, the AudioCraft clone, xformers, artifacts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from training.audiocraft import notebook as nb


def test_run_step_runs_skips_and_fails(tmp_path: Path, capsys) -> None:
    assert nb.run_step(["touch", str(tmp_path / "x")]) is True and (tmp_path / "x").exists()
    assert nb.run_step(["touch", str(tmp_path / "y")], enabled=False, what="PIP_INSTALL=False") is False
    assert not (tmp_path / "y").exists()
    assert "skipped (PIP_INSTALL=False): touch" in capsys.readouterr().out
    with pytest.raises(nb.StepError, match="exit code 3"):
        nb.run_step(["sh", "-c", "exit 3"])


def test_system_packages_skip_when_present_or_switched_off(capsys) -> None:
    assert nb.install_system_packages(["sh"]) is False
    assert "system packages present: sh" in capsys.readouterr().out
    assert nb.install_system_packages(["surely-not-a-command-xyz"], enabled=False) is False
    assert "skipped (INSTALL_SYSTEM_PACKAGES=False): apt-get install" in capsys.readouterr().out


def test_clone_audiocraft_from_a_local_repo_then_skip(tmp_path: Path, capsys) -> None:
    upstream = tmp_path / "upstream"
    (upstream / "config" / "dset" / "audio").mkdir(parents=True)
    (upstream / "config" / "dset" / "audio" / "example.yaml").write_text("# @package __global__\n")
    git = ["git", "-C", str(upstream), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(upstream)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    subprocess.run(git + ["tag", "v1.3.0"], check=True)
    dest = tmp_path / "workspace" / "audiocraft"
    assert nb.clone_audiocraft(dest, f"file://{upstream}", "v1.3.0") == dest
    assert (dest / "config" / "dset" / "audio" / "example.yaml").is_file()
    capsys.readouterr()
    nb.clone_audiocraft(dest, "file:///nowhere", "v1.3.0")
    assert "AudioCraft checkout present" in capsys.readouterr().out
    with pytest.raises(nb.MissingArtifactError, match="CLONE_AUDIOCRAFT=True"):
        nb.clone_audiocraft(tmp_path / "none", enabled=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(nb.StepError, match="not an AudioCraft checkout"):
        nb.clone_audiocraft(tmp_path / "busy")


def test_ensure_xformers_never_raises(make_fake_audiocraft) -> None:
    ok = make_fake_audiocraft(name="ok")
    assert nb.ensure_xformers(ok.python, allow_install=False).startswith("xformers ok (warning ignored")
    broken = make_fake_audiocraft(xformers="broken", name="broken")
    status = nb.ensure_xformers(broken.python, allow_install=False)
    assert "ImportError: libcudart.so.12" in status and "pre-flight" in status
    assert nb.ensure_xformers("/nonexistent/python").startswith("xformers: cannot run /nonexistent/python")


def test_require_artifacts(tmp_path: Path) -> None:
    nb.require_artifacts({"here": tmp_path})
    with pytest.raises(nb.MissingArtifactError, match=r"missing: egs \(.*\) — run Notebook A"):
        nb.require_artifacts({"here": tmp_path, "egs": tmp_path / "egs"})


def test_install_audiocraft_skips_an_installed_checkout(make_fake_audiocraft, tmp_path: Path, capsys) -> None:
    fake = make_fake_audiocraft()
    assert nb.install_audiocraft(fake.root, python=fake.python) is False
    assert f"AudioCraft already installed from {fake.root}" in capsys.readouterr().out
    assert nb.install_audiocraft(tmp_path / "elsewhere", python=fake.python, enabled=False) is False
    assert "skipped (PIP_INSTALL=False): " in capsys.readouterr().out
