"""s4 (wf-sidecar-add) end to end through its CLI on a real token tree, with every built-in."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import paramproducers as pp
from workflow import sidecar
from workflow.synth import midi_to_hz
from workflow.runner import WorkItem, run_cli
from workflow.s3_sidecar_init import main as s3
from workflow.s4_sidecar_add import AddJob, main as s4

REPO = Path(__file__).resolve().parents[2]
Q = ["--no-progress"]
KICK = "drums/kick/kick_vel_40_pitch_36.5"
SNARE = "drums/snare/snare_vel_55_pitch_37.5"
HAT = "drums/hat/hat_vel_70_pitch_38.5"
TONE48 = "tones/set0/tone_pitch_48.00_amp_0.25"
TONE52 = "tones/set1/tone_pitch_52.50_amp_0.35"
ALL = [HAT, KICK, SNARE, TONE48, "tones/set0/tone_pitch_57.00_amp_0.45", TONE52,
       "tones/set1/tone_pitch_61.50_amp_0.55"]


@pytest.fixture
def tree(token_copy) -> dict[str, Path]:
    """The token copy with empty sidecars (s3) beside the tokens."""
    assert s3(["--audio-root", str(token_copy["tokens"])] + Q) == 0
    return token_copy


def add(tree, *argv: str) -> int:
    return s4(["--audio-root", str(tree["tokens"]), *argv] + Q)


def side(tree, stem: str) -> sidecar.Sidecar:
    return sidecar.read_sidecar(tree["tokens"] / f"{stem}.cond.npy")


def report(tree) -> dict:
    reps = sorted((tree["tokens"] / ".reports").glob("s4_sidecar_add-*.json"), key=os.path.getmtime)
    return json.loads(reps[-1].read_text())


def failures(tree) -> dict[str, str]:
    return {r["key"]: r["error"] for r in report(tree)["results"] if r["status"] == "failed"}


def write_producer(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


# -- built-ins ---------------------------------------------------------------------------------------------
def test_const_and_lin_exact_values(tree) -> None:
    assert add(tree, "--producer", "const", "--const", "gain=0.5", "--const", "k=-2",
               "--producer", "lin", "--lin", "ramp=0:1", "--lin", "down=10:-5") == 0
    for stem in ALL:
        sc = side(tree, stem)
        assert sc.names == ["gain", "k", "ramp", "down"]
        assert np.all(sc.column("gain") == 0.5) and np.all(sc.column("k") == -2.0)
        np.testing.assert_allclose(sc.column("ramp"), np.linspace(0, 1, 75), atol=5e-4)
        np.testing.assert_allclose(sc.column("down"), np.linspace(10, -5, 75), atol=5e-3)
        assert (sc.column("ramp")[0], sc.column("ramp")[-1]) == (0.0, 1.0)
        assert [f.producer for f in sc.features.values()] == ["const", "const", "lin", "lin"]
        assert sc.features["ramp"].range_from == "data" and sc.features["ramp"].max == 1.0


def test_from_filename_parses_the_demo_names(tree) -> None:
    # drums carry vel+pitch, tones pitch+amp: one feature set for all needs defaults
    assert add(tree, "--producer", "from_filename", "--filename-keys", "vel", "pitch", "amp",
               "--filename-default", "vel=0", "--filename-default", "amp=1") == 0
    kick = side(tree, KICK)
    assert kick.names == ["vel", "pitch", "amp"]
    assert np.all(kick.column("vel") == 40) and np.all(kick.column("pitch") == 36.5)
    assert np.all(kick.column("amp") == 1)
    assert kick.features["pitch"].producer == "from_filename"
    tone = side(tree, TONE48)
    assert tone.names == ["vel", "pitch", "amp"] and np.all(tone.column("vel") == 0)
    assert np.all(tone.column("pitch") == 48.0) and np.all(tone.column("amp") == 0.25)
    t52 = side(tree, TONE52)
    assert np.all(t52.column("pitch") == 52.5)
    np.testing.assert_allclose(t52.column("amp"), 0.35, atol=2e-4)  # float16 storage


def test_from_filename_keys_a_file_lacks_fail_the_run_before_writing(tree, capsys) -> None:
    assert run_cli(s4, ["--audio-root", str(tree["tokens"]), "--producer", "from_filename",
                        "--filename-keys", "vel"] + Q) == 1
    err = capsys.readouterr().err
    assert "4 file(s) -> (no columns)" in err and "--filename-default vel=0" in err
    assert all(side(tree, s).names == [] for s in ALL)  # nothing written, not even the drums


def test_from_audio_rows_match_T_and_values_are_sane(tree) -> None:
    norm = tree["norm"]
    wav = norm / f"{TONE48}.wav"
    y, sr = sf.read(wav, dtype="float32")
    y[len(y) // 2:] = 0.0  # second half silent
    sf.write(wav, y, sr, subtype="PCM_16")
    assert add(tree, "--producer", "from_audio", "--wav-root", str(norm)) == 0
    sc = side(tree, TONE48)
    assert sc.names == ["rms_db", "spectral_centroid", "f0", "voiced", "onset_strength", "zcr"]
    assert sc.values.shape == (75, 6) and np.all(np.isfinite(sc.values))
    rms, f0, voiced = sc.column("rms_db"), sc.column("f0"), sc.column("voiced")
    tone, silence = slice(3, 33), slice(42, 75)
    assert rms[tone].min() > rms[silence].max() + 30
    assert np.all(rms[silence] == -100.0)
    assert voiced[tone].mean() > 0.9 and np.all(voiced[silence] == 0) and np.all(f0[silence] == 0)
    on = voiced > 0
    np.testing.assert_allclose(f0[on], midi_to_hz(48), rtol=0.02)
    assert sc.features["f0"].units == "Hz" and sc.features["voiced"].range_from == "producer"
    assert (sc.features["voiced"].min, sc.features["voiced"].max) == (0.0, 1.0)
    snare, hat, kick = side(tree, SNARE), side(tree, HAT), side(tree, KICK)
    assert snare.column("voiced").mean() < 0.2  # noise is not periodic
    assert hat.features["spectral_centroid"].mean > kick.features["spectral_centroid"].mean
    assert hat.features["zcr"].mean > kick.features["zcr"].mean
    assert sc.column("onset_strength").max() > 0


def test_from_audio_subset_and_missing_wav(tree) -> None:
    norm = tree["norm"]
    (norm / f"{KICK}.wav").unlink()
    assert add(tree, "--producer", "from_audio", "--wav-root", str(norm), "--features", "rms_db", "zcr") == 1
    (key, err), = failures(tree).items()
    assert key == f"{KICK}.ecdc" and "from_audio" in err and "kick_vel_40_pitch_36.5.ecdc" in err
    assert "--wav-root" in err
    assert side(tree, SNARE).names == ["rms_db", "zcr"] and side(tree, KICK).names == []
    assert run_cli(s4, ["--audio-root", str(tree["tokens"]), "--producer", "from_audio"] + Q) == 2


def test_from_csv_constants(tree) -> None:
    csv_path = tree["root"] / "labels.csv"
    csv_path.write_text("file,valence,comment,energy\n"
                        f"{KICK}.wav,0.25,hard,3\n"
                        "snare_vel_55_pitch_37.5,-1.5,soft,\n"  # bare stem, empty energy
                        f"./{TONE48}.flac,2,,7.5\n")
    assert add(tree, "--producer", "from_csv", "--csv", str(csv_path)) == 1
    fails = failures(tree)
    # no row: hat and three tones; empty energy cell: snare
    assert sorted(fails) == sorted(f"{s}.ecdc" for s in ALL if s not in (KICK, TONE48))
    assert "no row" in fails[f"{HAT}.ecdc"] and "from_csv" in fails[f"{HAT}.ecdc"]
    assert "'energy' is empty" in fails[f"{SNARE}.ecdc"]
    kick = side(tree, KICK)
    assert kick.names == ["valence", "energy"]  # the text column is not a feature
    assert np.all(kick.column("valence") == 0.25) and np.all(kick.column("energy") == 3)
    assert np.all(side(tree, TONE48).column("energy") == 7.5)
    assert add(tree, "--producer", "from_csv", "--csv", str(csv_path), "--csv-columns", "valence",
               "--skip-errors", "--mode", "overwrite") == 0
    assert np.all(side(tree, SNARE).column("valence") == -1.5)


def test_from_csv_time_series(tree) -> None:
    csv_path = tree["root"] / "curves.tsv"
    csv_path.write_text("name\tt\tlevel\n"
                        f"{KICK}\t1.0\t75\n"
                        f"{KICK}\t0.0\t0\n"  # unsorted rows are fine
                        f"{TONE48}\t0.2\t5\n")
    base = ["--producer", "from_csv", "--csv", str(csv_path), "--csv-time-column", "t", "--skip-errors"]
    assert add(tree, *base) == 0
    np.testing.assert_array_equal(side(tree, KICK).column("level"), np.arange(75))  # t/fps * 75
    assert np.all(side(tree, TONE48).column("level") == 5)  # one point: held
    assert side(tree, SNARE).names == []
    csv_path.write_text("name\tt\tlevel\n" f"{KICK}\t0\t1\n" f"{KICK}\t0.5\t2\n")
    assert add(tree, *base, "--mode", "overwrite", "--csv-interp", "previous") == 0
    lvl = side(tree, KICK).column("level")
    assert np.all(lvl[:38] == 1) and np.all(lvl[38:] == 2)  # frame 37 starts at 0.493 s


# -- modes ---------------------------------------------------------------------------------------------------
def test_append_keeps_existing_overwrite_replaces_skip_existing_adds(tree) -> None:
    assert add(tree, "--producer", "const", "--const", "a=1", "--const", "b=2") == 0
    assert add(tree, "--producer", "const", "--const", "a=5") == 0  # append: a kept, with a warning
    assert report(tree)["counts"]["failed"] == 0
    assert np.all(side(tree, KICK).column("a") == 1)

    assert add(tree, "--producer", "const", "--const", "a=5", "--mode", "overwrite") == 0
    sc = side(tree, KICK)
    assert sc.names == ["a", "b"] and np.all(sc.column("a") == 5) and np.all(sc.column("b") == 2)
    assert add(tree, "--producer", "const", "--const", "b=7", "--overwrite") == 0  # alias
    assert np.all(side(tree, KICK).column("b") == 7)

    assert add(tree, "--producer", "const", "--const", "a=9", "--const", "c=3", "--skip-existing") == 0
    sc = side(tree, KICK)
    assert sc.names == ["a", "b", "c"] and np.all(sc.column("a") == 5) and np.all(sc.column("c") == 3)
    # every declared column present: files are skipped without running the producers
    assert add(tree, "--producer", "const", "--const", "a=9", "--skip-existing") == 0
    assert report(tree)["counts"]["skipped"] == 7
    assert run_cli(s4, ["--audio-root", str(tree["tokens"]), "--producer", "const", "--const", "a=1",
                        "--skip-existing", "--overwrite"]) == 2


def test_producer_metadata_and_stats_survive_later_runs(tree, tmp_path: Path) -> None:
    pdir = tmp_path / "prods"
    write_producer(pdir, "ranged", '''
        """A column with units, doc and a normalisation range."""
        import numpy as np
        def produce(ecdc_path, T, *, args):
            return {"x": {"values": np.linspace(2, 4, T), "units": "bar", "doc_string": "pressure",
                          "min": 0.0, "max": 10.0}}
        ''')
    assert add(tree, "--producers-dir", str(pdir), "--producer", "ranged") == 0
    assert add(tree, "--producer", "const", "--const", "y=1") == 0
    meta = json.loads((tree["tokens"] / f"{KICK}.cond.json").read_text())
    x = meta["features"]["x"]
    assert (x["units"], x["doc_string"], x["min"], x["max"], x["range_from"], x["producer"]) == \
        ("bar", "pressure", 0.0, 10.0, "producer", "ranged")
    assert x["mean"] == pytest.approx(3.0, abs=1e-3)
    # Overwrite x with a plain array: the given units, doc and range are kept, stats are new.
    assert add(tree, "--producer", "const", "--const", "x=5", "--mode", "overwrite") == 0
    meta = json.loads((tree["tokens"] / f"{KICK}.cond.json").read_text())
    assert list(meta["features"]) == ["x", "y"]
    x = meta["features"]["x"]
    assert (x["units"], x["doc_string"], x["min"], x["max"], x["range_from"]) == ("bar", "pressure", 0.0, 10.0, "producer")
    assert x["mean"] == 5.0 and x["std"] == 0.0 and x["producer"] == "const"


def test_bad_producer_fails_only_its_files_and_writes_nothing_there(tree, tmp_path: Path) -> None:
    pdir = tmp_path / "prods"
    write_producer(pdir, "flaky", '''
        """Wrong length for kicks, NaN for snares, an exception for hats."""
        import numpy as np
        def produce(ecdc_path, T, *, args):
            name = ecdc_path.name
            if name.startswith("kick"):
                return {"z": np.zeros(T - 3)}
            if name.startswith("snare"):
                v = np.zeros(T); v[7] = np.nan
                return {"z": v}
            if name.startswith("hat"):
                raise KeyError("boom")
            return {"z": np.ones(T)}
        ''')
    assert add(tree, "--producer", "const", "--const", "c=1", "--producers-dir", str(pdir),
               "--producer", "flaky") == 1
    fails = failures(tree)
    assert sorted(fails) == [f"{HAT}.ecdc", f"{KICK}.ecdc", f"{SNARE}.ecdc"]
    for key, err in fails.items():
        assert "'flaky'" in err and key.rsplit("/", 1)[1] in err
    assert "expected [75]" in fails[f"{KICK}.ecdc"]
    assert "NaN" in fails[f"{SNARE}.ecdc"] and "frame 7" in fails[f"{SNARE}.ecdc"]
    assert "KeyError" in fails[f"{HAT}.ecdc"]
    for stem in (KICK, SNARE, HAT):
        assert side(tree, stem).names == []  # not even the const column: nothing half-written
    assert side(tree, TONE48).names == ["c", "z"]
    assert add(tree, "--producers-dir", str(pdir), "--producer", "flaky", "--skip-errors",
               "--mode", "overwrite") == 0


def test_two_producers_returning_one_name_and_flag_clash(tree, tmp_path: Path) -> None:
    pdir = tmp_path / "prods"
    write_producer(pdir, "also_a", '''
        """Returns a."""
        def produce(ecdc_path, T, *, args):
            return {"a": [1.0] * T}
        ''')
    write_producer(pdir, "clash", '''
        """Takes s4's --mode flag."""
        def add_cli_args(parser):
            parser.add_argument("--mode")
        def produce(ecdc_path, T, *, args):
            return {}
        ''')
    assert add(tree, "--producer", "const", "--const", "a=2", "--producers-dir", str(pdir),
               "--producer", "also_a") == 1
    assert all("'const' and 'also_a' both return 'a'" in e for e in failures(tree).values())
    assert run_cli(s4, ["--audio-root", str(tree["tokens"]), "--producers-dir", str(pdir),
                        "--producer", "clash"]) == 2
    assert run_cli(s4, ["--audio-root", str(tree["tokens"]), "--producer", "const"]) == 2  # no --const
    assert run_cli(s4, ["--audio-root", str(tree["tokens"]), "--producer", "nope"]) == 2


def test_create_missing(token_copy) -> None:
    tok = token_copy["tokens"]
    argv = ["--audio-root", str(tok), "--producer", "lin", "--lin", "r=1:2"] + Q
    assert s4(argv) == 1
    tree = token_copy
    assert all("wf-sidecar-init" in e and "--create-missing" in e for e in failures(tree).values())
    assert not list(tok.rglob("*.cond.*"))
    assert s4(argv + ["--create-missing", "--dtype", "float32"]) == 0
    sc = side(tree, KICK)
    assert sc.names == ["r"] and sc.dtype == "float32" and sc.fps == 75.0 and sc.source == f"{KICK}.ecdc"
    np.testing.assert_allclose(sc.column("r"), np.linspace(1, 2, 75), rtol=1e-6)


def test_cond_root(token_copy) -> None:
    tok, cond = token_copy["tokens"], token_copy["root"] / "cond"
    assert s3(["--audio-root", str(tok), "--cond-root", str(cond)] + Q) == 0
    assert s4(["--audio-root", str(tok), "--cond-root", str(cond), "--producer", "from_filename",
               "--filename-keys", "vel", "pitch", "--filename-default", "vel=0"] + Q) == 0
    assert sidecar.read_sidecar(cond / f"{KICK}.cond.npy").names == ["vel", "pitch"]
    assert list((cond / ".reports").glob("s4_sidecar_add-*.json"))


# -- loading, help, listing ------------------------------------------------------------------------------
def test_producers_dir_py_path_and_dotted_module(tree, tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "site" / "mylab"
    write_producer(pkg, "__init__", '"""My lab."""\n')
    write_producer(pkg, "prods", '''
        """Dotted-path producer."""
        def produce(ecdc_path, T, *, args):
            return {"dotted": [3.0] * T}
        ''')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    file_prod = write_producer(tmp_path / "loose", "loose_one", '''
        """Given as a path."""
        def produce(ecdc_path, T, *, args):
            return {"loose": [4.0] * T}
        ''')
    assert add(tree, "--producer", "mylab.prods", "--producer", str(file_prod)) == 0
    sc = side(tree, KICK)
    assert sc.names == ["dotted", "loose"] and np.all(sc.column("dotted") == 3)
    assert (sc.features["dotted"].producer, sc.features["loose"].producer) == ("mylab.prods", "loose_one")


def test_two_phase_help_shows_the_producers_flags(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        s4(["--help"])
    assert e.value.code == 0
    plain = capsys.readouterr().out
    assert "--producer NAME" in plain and "--const NAME=VALUE" not in plain and "--mode" in plain
    with pytest.raises(SystemExit) as e:
        s4(["--producer", "const", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--const NAME=VALUE" in out and "producer const" in out
    with pytest.raises(SystemExit):
        s4(["--producer", "from_csv", "--producer", "lin", "-h"])
    out = capsys.readouterr().out
    assert "--csv-time-column" in out and "--lin" in out


def test_list_and_show_producers(capsys) -> None:
    assert s4(["--list-producers"]) == 0
    out = capsys.readouterr().out
    for name in pp.BUILTINS:
        assert re.search(rf"^  {name}\s+\S", out, re.M), name
    assert "Constant columns" in out
    assert s4(["--list-producers", "--producers-dir", str(REPO / "paramproducers" / "examples")]) == 0
    assert re.search(r"^  beat_phase\s+Beat position", capsys.readouterr().out, re.M)
    assert s4(["--show-producer", "from_csv"]) == 0
    out = capsys.readouterr().out
    assert "spreadsheet" in out and "--csv-time-column" in out and "--csv-interp" in out
    assert run_cli(s4, ["--show-producer", "nope"]) == 2


def test_process_and_thread_workers_share_init_state(tree) -> None:
    csv_path = tree["root"] / "t.csv"
    csv_path.write_text("file,q\n" + "".join(f"{s},{i}\n" for i, s in enumerate(ALL)))
    assert add(tree, "--producer", "from_csv", "--csv", str(csv_path), "--workers", "2") == 0
    assert add(tree, "--producer", "lin", "--lin", "r=0:1", "--workers", "2", "--executor", "thread") == 0
    for i, stem in enumerate(ALL):
        sc = side(tree, stem)
        assert np.all(sc.column("q") == i) and sc.names == ["q", "r"]


def test_a_fresh_worker_initialises_producers_itself(tree) -> None:
    """What a spawned worker does: nothing is active, so the job imports and inits on first use."""
    csv_path = tree["root"] / "t.csv"
    csv_path.write_text("file,q\n" f"{KICK},42\n")
    from workflow.s4_sidecar_add import build_parser

    producer = pp.load("from_csv")
    args = build_parser([producer]).parse_args(
        ["--audio-root", str(tree["tokens"]), "--producer", "from_csv", "--csv", str(csv_path)])
    pp._ACTIVE.clear()
    from paramproducers import from_csv
    from_csv._STATE.clear()
    job = AddJob((producer.ref,), args)
    src = tree["tokens"] / f"{KICK}.ecdc"
    info = job(WorkItem(f"{KICK}.ecdc", src, tree["tokens"] / f"{KICK}.cond.npy"))
    assert info["added"] == ["q"] and np.all(side(tree, KICK).column("q") == 42)
    pp.deactivate(args)
    assert not pp._ACTIVE


# -- the README's worked example --------------------------------------------------------------------------
def test_readme_example_is_the_file_and_its_command_runs(tree) -> None:
    readme = (REPO / "paramproducers" / "README_paramproducers.md").read_text()
    m = re.search(r"^## Worked example: `([^`]+)`", readme, re.M)
    assert m, "the README names its example file"
    example = REPO / m.group(1)
    blocks = re.findall(r"```python\n(.*?)```", readme[m.end():], re.S)
    assert blocks[0] == example.read_text(), "README copy of the example is out of date"
    (cmd,) = re.findall(r"^wf-sidecar-add .*--producer beat_phase.*$", readme[m.end():], re.M)
    argv = shlex.split(cmd)[1:]
    argv = [str(tree["tokens"]) if a == "tokens/" else str(REPO / a) if a.startswith("paramproducers/") else a
            for a in argv]
    assert s4(argv + Q) == 0
    sc = side(tree, KICK)
    assert sc.names == ["beat_phase", "beat_index"]
    beats = np.arange(75) / 75.0 * 2.0  # 120 bpm at 75 fps
    np.testing.assert_allclose(sc.column("beat_phase"), beats % 1.0, atol=1e-3)
    np.testing.assert_array_equal(sc.column("beat_index"), np.floor(beats))
    f = sc.features["beat_phase"]
    assert (f.min, f.max, f.range_from, f.units, f.producer) == (0.0, 1.0, "producer", "beats", "beat_phase")
    # the same file as a dotted module path
    assert s4(["--audio-root", str(tree["tokens"]), "--producer", "paramproducers.examples.beat_phase",
               "--bpm", "60", "--mode", "overwrite"] + Q) == 0
    assert side(tree, KICK).features["beat_phase"].producer == "paramproducers.examples.beat_phase"


def test_runs_as_file_module_and_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    for cmd in ([sys.executable, str(REPO / "workflow" / "s4_sidecar_add.py"), "--producer", "const", "--help"],
                [sys.executable, "-m", "workflow.s4_sidecar_add", "--producer", "lin", "--help"],
                [str(Path(sys.executable).parent / "wf-sidecar-add"), "--list-producers"],
                [sys.executable, str(REPO / "workflow" / "s3_sidecar_init.py"), "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        assert any(f in res.stdout for f in ("--const", "--lin", "from_filename", "--manifest-csv"))


# -- the seed's command lines on a mixed tree (issue 13) ----------------------------------------------------
MIXED = ["tones/tone_pitch_48_amp_0.25", "tones/tone_pitch_50_amp_0.5", "tones/tone_pitch_52_amp_0.75",
         "sweeps/chirp_100_to_4000", "sine_440", "noise"]


def small_tree(root: Path, stems: list[str], frames: int = 12) -> Path:
    """Tiny real .ecdc files (EnCodec 24 kHz layout, 2 codebooks) with s3's empty sidecars."""
    from workflow.ecdc import write_ecdc

    for i, stem in enumerate(stems):
        path = root / f"{stem}.ecdc"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_ecdc(path, np.full((2, frames), i, np.int16), model="encodec_24khz", audio_length=frames * 320, bits=10)
    assert s3(["--audio-root", str(root)] + Q) == 0
    return root


def columns(root: Path) -> dict[str, list[str]]:
    return {p.relative_to(root).as_posix(): sidecar.read_sidecar(p).names for p in sorted(root.rglob("*.cond.npy"))}


def test_seed_typical_s4_line_runs_as_written(tmp_path: Path) -> None:
    """The seed's ``--from-filename`` flag and its regex group ``name`` (for ``key``) work."""
    root = small_tree(tmp_path / "ecdc", ["a/kick_vel_40", "a/kick_vel_64", "b/snare_vel_100.5"])
    argv = shlex.split("--audio-root ./ecdc --cond-root ./params --producers-dir ./paramproducers "
                       "--producer from_filename --from-filename "
                       r"--filename-regex '_(?P<name>\w+)_(?P<value>-?\d+(\.\d+)?)'")
    argv = [str(root) if a == "./ecdc" else str(tmp_path / "params") if a == "./params" else
            str(REPO / "paramproducers") if a == "./paramproducers" else a for a in argv]
    assert s3(["--audio-root", str(root), "--cond-root", str(tmp_path / "params")] + Q) == 0
    assert s4(argv + Q) == 0
    sc = sidecar.read_sidecar(tmp_path / "params" / "b" / "snare_vel_100.5.cond.npy")
    assert sc.names == ["vel"] and np.all(sc.column("vel") == 100.5)
    # --from-filename alone selects the producer
    assert s4(["--audio-root", str(root), "--cond-root", str(root), "--from-filename", "--mode", "overwrite"] + Q) == 0
    assert columns(root)["a/kick_vel_64.cond.npy"] == ["vel"]


def test_without_cond_root_s4_uses_the_folder_s3_recorded(tmp_path: Path, capsys) -> None:
    """s3 --cond-root records where the sidecars went; s4 without --cond-root writes there, like
    s5 and the audit read there (not a second set of sidecars beside the tokens)."""
    root = small_tree(tmp_path / "ecdc", ["x_1", "y_2"])
    params = tmp_path / "params"
    assert s3(["--audio-root", str(root), "--cond-root", str(params)] + Q) == 0
    capsys.readouterr()
    assert s4(["--audio-root", str(root), "--producer", "const", "--const", "k=3"] + Q) == 0
    assert f"sidecars: under {params}" in capsys.readouterr().out
    assert columns(params) == {"x_1.cond.npy": ["k"], "y_2.cond.npy": ["k"]}
    assert all(v == [] for v in columns(root).values())  # the empty ones small_tree made beside the tokens


def test_append_rerun_is_a_no_op_that_warns_on_different_values(tmp_path: Path, capsys) -> None:
    root = small_tree(tmp_path / "tok", ["x_1", "x_2"])
    line = ["--audio-root", str(root), "--producer", "const", "--const", "scene_id=7", "--producer", "lin",
            "--lin", "gain=0:1", "--mode", "append", "--create-missing"] + Q
    assert s4(line) == 0
    before = {p: p.read_bytes() for p in sorted(root.rglob("*.cond.*"))}
    capsys.readouterr()
    assert s4(line) == 0  # the seed: append keeps existing features
    assert {p: p.read_bytes() for p in before} == before
    assert "WARNING" not in capsys.readouterr().err
    line[line.index("scene_id=7")] = "scene_id=8"
    assert s4(line) == 0
    warned = [w for w in capsys.readouterr().err.splitlines() if w.startswith("WARNING")]
    assert len(warned) == 2 and all("'scene_id' already present with different values" in w for w in warned)
    assert np.all(sidecar.read_sidecar(root / "x_1.cond.npy").column("scene_id") == 7)


def test_legacy_torch_token_files_work_in_s3_and_s4(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    root = tmp_path / "ecdc"
    root.mkdir()
    for i, name in enumerate(["kick_vel_40", "kick_vel_64"]):
        codes = torch.full((1, 1, 4, 30 + i), 5, dtype=torch.int64)  # upstream s2: [chunks, 1, K, T]
        torch.save({"audio_codes": codes, "audio_scales": [None], "audio_length": (30 + i) * 320},
                   root / f"{name}.ecdc")
    assert s3(["--audio-root", str(root), "--manifest-csv", str(tmp_path / "m.csv")] + Q) == 0
    assert (tmp_path / "m.csv").read_text().splitlines()[1:] == [
        "kick_vel_40.ecdc,kick_vel_40.cond.npy,30,0,75.0,4", "kick_vel_64.ecdc,kick_vel_64.cond.npy,31,0,75.0,4"]
    assert s4(["--audio-root", str(root), "--producer", "from_filename", "--producer", "lin", "--lin", "p=0:1"] + Q) == 0
    sc = sidecar.read_sidecar(root / "kick_vel_64.cond.npy")
    assert sc.names == ["vel", "p"] and sc.frames == 31 and np.all(sc.column("vel") == 64)


def test_mixed_tree_fails_before_writing_and_the_printed_fix_works(tmp_path: Path, capsys) -> None:
    root = small_tree(tmp_path / "tok", MIXED)
    argv = ["--audio-root", str(root), "--producer", "from_filename"] + Q
    assert run_cli(s4, argv) == 1
    err = capsys.readouterr().err
    assert all(names == [] for names in columns(root).values())  # nothing written: no chirp/to/sine junk
    assert "3 file(s) -> pitch, amp" in err
    for odd in ("sweeps/chirp_100_to_4000.ecdc", "sine_440.ecdc", "noise.ecdc"):
        assert odd in err
    (fix,) = [line.strip() for line in err.splitlines() if line.strip().startswith("wf-sidecar-add ")]
    fix_argv = shlex.split(fix)[1:]
    assert fix_argv[: len(argv)] == argv
    assert fix_argv[len(argv):] == ["--filename-keys", "pitch", "amp", "--filename-default", "pitch=0",
                                    "--filename-default", "amp=0"]
    assert s4(fix_argv) == 0
    assert set(map(tuple, columns(root).values())) == {("pitch", "amp")}
    tone = sidecar.read_sidecar(root / "tones" / "tone_pitch_50_amp_0.5.cond.npy")
    assert np.all(tone.column("pitch") == 50) and np.all(tone.column("amp") == 0.5)
    assert np.all(sidecar.read_sidecar(root / "noise.cond.npy").values == 0)
    # --drop removes a column from every sidecar
    assert s4(["--audio-root", str(root), "--drop", "amp"] + Q) == 0
    assert set(map(tuple, columns(root).values())) == {("pitch",)}
    assert np.all(sidecar.read_sidecar(root / "tones" / "tone_pitch_52_amp_0.75.cond.npy").column("pitch") == 52)


def test_filename_default_fills_keys_a_name_lacks(tmp_path: Path) -> None:
    root = small_tree(tmp_path / "tok", ["tone_pitch_60_amp_0.5", "tone_pitch_62"])
    assert s4(["--audio-root", str(root), "--producer", "from_filename", "--filename-default", "amp=0.25"] + Q) == 0
    sc = sidecar.read_sidecar(root / "tone_pitch_62.cond.npy")
    assert sc.names == ["amp", "pitch"] and np.all(sc.column("amp") == 0.25) and np.all(sc.column("pitch") == 62)
    assert np.all(sidecar.read_sidecar(root / "tone_pitch_60_amp_0.5.cond.npy").column("amp") == 0.5)


def test_concurrent_runs_lose_no_column(tmp_path: Path) -> None:
    """Two real processes add different columns to one folder at the same time."""
    stems = [f"f_{i}" for i in range(6)]
    root = small_tree(tmp_path / "tok", stems)
    pdir = tmp_path / "prods"
    write_producer(pdir, "slow", '''
        """A slow producer whose processes start together (a barrier of marker files)."""
        import os, time
        from pathlib import Path
        def add_cli_args(parser):
            parser.add_argument("--slow-name")
            parser.add_argument("--slow-barrier")
        def init(args):
            Path(args.slow_barrier, args.slow_name).touch()
            deadline = time.time() + 60
            while len(os.listdir(args.slow_barrier)) < 2 and time.time() < deadline:
                time.sleep(0.01)
        def produce(ecdc_path, T, *, args):
            time.sleep(0.15)  # widens the read-modify-write window of an unlocked s4
            return {args.slow_name: [1.0] * T}
        ''')
    (tmp_path / "barrier").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "workflow.s4_sidecar_add", "--audio-root", str(root),
                               "--producers-dir", str(pdir), "--producer", "slow", "--slow-name", name,
                               "--slow-barrier", str(tmp_path / "barrier"), "--report",
                               str(tmp_path / f"{name}.json")] + Q, env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("alpha", "beta")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for stem in stems:
        assert sorted(sidecar.read_sidecar(root / f"{stem}.cond.npy").names) == ["alpha", "beta"], stem
    assert not list(root.glob(".*.lock"))  # lock files are removed after use


def test_help_of_shared_flags_describes_s4(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside flag names
    with pytest.raises(SystemExit):
        s4(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--overwrite same as --mode overwrite: replace columns that already exist" in out
    assert "redo items whose outputs already exist" not in out
    assert "default: <--cond-root, else --audio-root>/.reports/s4_sidecar_add-" in out
    assert "--drop NAME remove column NAME from every sidecar" in out
