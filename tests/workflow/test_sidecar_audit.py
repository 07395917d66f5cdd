"""wf-sidecar-audit on real token trees with real sidecars, each issue made by damaging a file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from workflow import sidecar as S
from workflow import sidecar_audit as A
from workflow.ecdc import read_ecdc_header
from workflow.files import discover, relative_key
from workflow.runner import RunOptions, run_cli

REPO = Path(__file__).resolve().parents[2]
QUIET = ["--no-progress", "--workers", "1"]


def write_sidecars(tokens: Path, cond: Path | None = None, dtype: str = "float16") -> list[str]:
    """A pitch column (producer range 0..127, midi) and a ramp (data range) for every token file."""
    keys = []
    for e in discover(tokens, [".ecdc"]):
        h = read_ecdc_header(e)
        t = h.num_frames
        sc = S.empty_sidecar(t, h.fps, relative_key(e, tokens), dtype)
        sc = S.merge_features(sc, {
            "pitch": (np.full(t, 60.5), S.FeatureInfo(units="midi", min=0.0, max=127.0,
                                                      range_from="producer", producer="test")),
            "ramp": (np.linspace(0.0, 1.0, t), S.FeatureInfo(units="s", producer="test")),
        })
        S.write_sidecar(S.sidecar_path_for(e, tokens, cond), sc)
        keys.append(relative_key(e, tokens))
    return keys


@pytest.fixture
def tree(token_copy) -> dict:
    tokens = token_copy["tokens"]
    keys = write_sidecars(tokens)
    victim = keys[0]
    ecdc = tokens / victim
    npy = S.sidecar_path_for(ecdc, tokens)
    return {"tokens": tokens, "keys": keys, "victim": victim, "ecdc": ecdc, "npy": npy,
            "json": S.json_path_for(npy), "root": token_copy["root"]}


def audit(tokens: Path, workers: int = 1, **cfg) -> A.AuditResult:
    return A.run_audit(tokens, A.AuditConfig(**cfg), options=RunOptions(workers=workers, progress=False))


def by_file(result: A.AuditResult) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for i in result.issues:
        out.setdefault(i.file, set()).add(i.issue)
    return out


# -- damage functions: each breaks the victim's files in one way ------------------------------------
def _edit_json(t: dict, fn: Callable[[dict], None]) -> None:
    meta = json.loads(t["json"].read_text())
    fn(meta)
    t["json"].write_text(json.dumps(meta))


def _truncate_ecdc(t):
    data = t["ecdc"].read_bytes()
    t["ecdc"].write_bytes(data[:-5])


def _not_ecdc(t):
    t["ecdc"].write_bytes(b"RIFF this is not a token file")


def _no_json(t):
    t["json"].unlink()


def _no_npy(t):
    t["npy"].unlink()


def _json_garbage(t):
    t["json"].write_text('{"schema_version": 2, "fps": 75, ')


def _npy_garbage(t):
    t["npy"].write_bytes(b"\x93NUMPY garbage")


def _three_columns(t):
    arr = np.load(t["npy"])
    np.save(t["npy"], np.concatenate([arr, arr[:, :1]], axis=1))


def _one_dimensional(t):
    arr = np.load(t["npy"])
    np.save(t["npy"], arr[:, 0].copy())


def _short_by_one_frame(t):
    sc = S.read_sidecar(t["npy"])
    S.write_sidecar(t["npy"], S.Sidecar(sc.values[:-1], sc.fps, sc.source, sc.features, sc.dtype))


def _json_frames_wrong(t):
    _edit_json(t, lambda m: m.update(frames=m["frames"] + 3))


def _stored_float32(t):
    sc = S.read_sidecar(t["npy"])
    S.write_sidecar(t["npy"], sc, dtype="float32")


def _stored_float64(t):
    np.save(t["npy"], np.load(t["npy"]).astype(np.float64))
    _edit_json(t, lambda m: m.pop("dtype"))


def _json_dtype_wrong(t):
    _edit_json(t, lambda m: m.update(dtype="float32"))


def _int_array(t):
    arr = np.load(t["npy"])
    np.save(t["npy"], arr.astype(np.int32))
    _edit_json(t, lambda m: m.pop("dtype"))


def _fps_50(t):
    _edit_json(t, lambda m: m.update(fps=50.0))


def _duplicate_v2_key(t):
    """Hand-edited v2 JSON: 'pitch' twice in 'features' (json.loads would silently keep one)."""
    meta = json.loads(t["json"].read_text())
    arr = np.load(t["npy"])
    np.save(t["npy"], np.concatenate([arr, arr[:, :1]], axis=1))
    pitch = json.dumps(meta["features"]["pitch"])
    feats = json.dumps(meta["features"])[:-1] + f', "pitch": {pitch}}}'
    meta["features"] = "@@"
    t["json"].write_text(json.dumps(meta).replace('"@@"', feats))


def _duplicate_v1_names(t):
    arr = np.load(t["npy"])
    np.save(t["npy"], np.concatenate([arr, arr[:, :1]], axis=1))
    t["json"].write_text(json.dumps({"names": ["pitch", "ramp", "pitch"], "fps": 75,
                                     "frames": int(arr.shape[0])}))


def _nan_in_pitch(t):
    arr = np.load(t["npy"])
    arr[5, 0] = np.nan
    arr[7, 0] = np.inf
    np.save(t["npy"], arr)


def _pitch_above_max(t):
    arr = np.load(t["npy"])
    arr[3, 0] = 130.0
    np.save(t["npy"], arr)


def _pitch_below_min(t):
    arr = np.load(t["npy"])
    arr[3, 0] = -2.0
    np.save(t["npy"], arr)


def _ramp_min_raised(t):
    """A data-derived min the data goes below: the loader's normalisation would overflow."""
    _edit_json(t, lambda m: m["features"]["ramp"].update(min=0.5))


def _ramp_max_stale(t):
    """A data-derived max the data never reaches (stats left over from older values)."""
    _edit_json(t, lambda m: m["features"]["ramp"].update(max=2.0))


def _bad_schema(t):
    _edit_json(t, lambda m: m.update(schema_version=9))


def _min_above_max(t):
    _edit_json(t, lambda m: m["features"]["pitch"].update(min=200.0))


CASES = [
    ("truncated_ecdc", _truncate_ecdc, [], {"bad_ecdc"}),
    ("not_an_ecdc", _not_ecdc, [], {"bad_ecdc"}),
    ("json_deleted", _no_json, [], {"missing_sidecar"}),
    ("npy_deleted", _no_npy, [], {"missing_sidecar"}),
    ("json_garbage", _json_garbage, [], {"bad_sidecar"}),
    ("npy_garbage", _npy_garbage, [], {"bad_sidecar"}),
    ("unknown_schema", _bad_schema, [], {"bad_sidecar"}),
    ("min_above_max", _min_above_max, [], {"bad_sidecar"}),
    ("extra_column", _three_columns, [], {"bad_shape"}),
    ("one_dimensional", _one_dimensional, [], {"bad_shape"}),
    ("one_frame_short", _short_by_one_frame, [], {"frame_mismatch"}),
    ("json_frames_wrong", _json_frames_wrong, [], {"frame_mismatch"}),
    ("stored_float32", _stored_float32, ["--expect-dtype", "float16", "--verify-ranges"], {"dtype_mismatch"}),
    ("stored_float64", _stored_float64, [], {"dtype_mismatch"}),
    ("json_dtype_wrong", _json_dtype_wrong, [], {"dtype_mismatch"}),
    ("int_array", _int_array, [], {"dtype_mismatch"}),
    ("json_fps_50", _fps_50, [], {"fps_mismatch"}),
    ("duplicate_v2_key", _duplicate_v2_key, [], {"duplicate_names"}),
    ("duplicate_v1_names", _duplicate_v1_names, [], {"duplicate_names"}),
    ("nan_and_inf", _nan_in_pitch, ["--verify-ranges"], {"non_finite"}),
    ("above_producer_max", _pitch_above_max, ["--verify-ranges"], {"range_above_max"}),
    ("below_producer_min", _pitch_below_min, ["--verify-ranges"], {"range_below_min"}),
    ("data_min_too_high", _ramp_min_raised, ["--verify-ranges"], {"range_below_min"}),
    ("data_max_stale", _ramp_max_stale, ["--verify-ranges"], {"stats_mismatch"}),
]


@pytest.mark.parametrize("damage, args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_damage_gives_exactly_its_issue(tree, damage, args, expected, capsys) -> None:
    damage(tree)
    csv_path = tree["root"] / "issues.csv"
    rc = A.main([str(tree["tokens"]), *QUIET, "--list", "all", "--export-csv", str(csv_path), *args])
    assert rc == 1
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(csv_path.open(newline="")))
    got: dict[str, set[str]] = {}
    for r in rows:
        got.setdefault(r["file"], set()).add(r["issue"])
    assert got == {tree["victim"]: expected}, printed
    for kind in expected:
        assert kind in printed and tree["victim"] in printed


def test_clean_tree_passes_every_check(tree, capsys) -> None:
    rc = A.main(["--audio-root", str(tree["tokens"]), "--no-progress", "--workers", "2",
                 "--expect-fps", "75", "--expect-dtype", "float16", "--require", "pitch,ramp",
                 "--verify-ranges"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "no issues found" in out and f"{len(tree['keys'])} token file(s) scanned" in out
    assert "pitch" in out and "midi" in out and "0..127" in out  # the feature table


def test_float16_rounding_is_not_a_range_violation(tree) -> None:
    """0.3 is not a float16: stored it becomes 0.30005 > 0.3, which must not be flagged; a value
    clearly above is, and --range-tol widens the range."""
    tokens, key = tree["tokens"], tree["victim"]
    sc = S.read_sidecar(tree["npy"])
    gain = np.full(sc.frames, 0.3)
    gain[:3] = 0.0
    info = S.FeatureInfo(units="lin", min=0.0, max=0.3, range_from="producer")
    S.write_sidecar(tree["npy"], S.merge_features(sc, {"gain": (gain, info)}))
    assert float(np.load(tree["npy"])[:, 2].max()) > 0.3  # the naive comparison would fire
    assert by_file(audit(tokens, verify_ranges=True)) == {key: {"mixed_features"}}  # only it has gain

    gain[10] = 0.31
    S.write_sidecar(tree["npy"], S.merge_features(sc, {"gain": (gain, info)}))
    result = audit(tokens, verify_ranges=True)
    assert by_file(result) == {key: {"range_above_max", "mixed_features"}}
    assert "gain" in result.issues[0].detail and "frame 10" in result.issues[0].detail
    assert by_file(audit(tokens, verify_ranges=True, range_tol=0.02)) == {key: {"mixed_features"}}
    assert by_file(audit(tokens, verify_ranges=False)) == {key: {"mixed_features"}}


def test_fps_against_expectation_and_float32_tree(tree) -> None:
    result = audit(tree["tokens"], expect_fps=50.0)
    assert by_file(result) == {k: {"fps_mismatch"} for k in tree["keys"]}
    assert all("--expect-fps" in i.detail for i in result.issues)
    # One issue per file, even though the sidecar disagrees with --expect-fps too.
    assert len(result.issues) == len(tree["keys"])
    # The token file's own fps is checked even when its sidecar is missing.
    tree["json"].unlink()
    assert by_file(audit(tree["tokens"], expect_fps=50.0))[tree["victim"]] == {"fps_mismatch", "missing_sidecar"}


def test_missing_features_and_orphans(tree) -> None:
    tree["ecdc"].unlink()
    result = audit(tree["tokens"], require=("pitch", "velocity"))
    issues = by_file(result)
    orphan = relative_key(tree["npy"], tree["tokens"])
    assert issues.pop(orphan) == {"orphan_sidecar"}
    assert issues == {k: {"missing_features"} for k in tree["keys"] if k != tree["victim"]}
    assert all("velocity" in i.detail for i in result.issues if i.issue == "missing_features")


def test_fail_on_selects_the_exit_code(tree, capsys) -> None:
    _fps_50(tree)
    base = [str(tree["tokens"]), *QUIET]
    assert A.main(base) == 1
    assert A.main([*base, "--fail-on", "any"]) == 1
    assert A.main([*base, "--fail-on", "none"]) == 0
    assert A.main([*base, "--fail-on", "bad_ecdc,missing_sidecar"]) == 0
    assert A.main([*base, "--fail-on", "bad_ecdc,fps_mismatch"]) == 1
    assert run_cli(A.main, [*base, "--fail-on", "fps_mismatch,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert run_cli(A.main, [str(tree["root"] / "nowhere"), *QUIET]) == 2


def test_export_csv_and_list(tree, capsys) -> None:
    _nan_in_pitch(tree)
    _fps_50(tree)
    out_csv = tree["root"] / "reports" / "issues.csv"
    rc = A.main([str(tree["tokens"]), *QUIET, "--require", "velocity", "--list", "2",
                 "--export-csv", str(out_csv)])
    assert rc == 1
    rows = list(csv.reader(out_csv.open(newline="")))
    assert rows[0] == ["file", "issue", "detail"]
    body = rows[1:]
    n = len(tree["keys"])
    assert len(body) == n + 2  # missing_features everywhere + the victim's fps and NaN
    assert sorted(r[1] for r in body if r[0] == tree["victim"]) == ["fps_mismatch", "missing_features",
                                                                     "non_finite"]
    nan_row = next(r for r in body if r[1] == "non_finite")
    assert "pitch" in nan_row[2] and "2 NaN/Inf" in nan_row[2] and "frame 5" in nan_row[2]
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if ".ecdc: " in line]
    assert len(listed) == 2 and f"and {n} more" in out
    assert "missing_features" in out and "fps_mismatch" in out  # summary table rows


def test_shards_cover_every_file_once(tree) -> None:
    tree["ecdc"].unlink()  # an orphan sidecar must be reported by exactly one shard too
    seen: list[str] = []
    issues: list[str] = []
    for i in range(3):
        r = A.run_audit(tree["tokens"], A.AuditConfig(),
                        options=RunOptions(shard_index=i, shard_count=3, progress=False))
        seen += r.files
        issues += [x.file for x in r.issues]
    assert sorted(seen) == sorted(k for k in tree["keys"] if k != tree["victim"])
    assert issues == [relative_key(tree["npy"], tree["tokens"])]


def test_cond_root_and_suffix(token_copy, tmp_path: Path) -> None:
    tokens, cond = token_copy["tokens"], tmp_path / "cond"
    keys = write_sidecars(tokens, cond)
    assert A.main(["--audio-root", str(tokens), "--cond-root", str(cond), *QUIET]) == 0
    result = audit(tokens)  # looking beside the tokens instead: every sidecar is missing
    assert by_file(result) == {k: {"missing_sidecar"} for k in keys}
    for p in cond.rglob("*.cond.*"):
        p.rename(p.with_name(p.name.replace(".cond.", ".feat.")))
    assert A.main(["--audio-root", str(tokens), "--cond-root", str(cond), "--suffix", ".feat.npy",
                   *QUIET]) == 0


def test_plot_writes_one_histogram_per_feature(tree) -> None:
    import matplotlib.image as mpimg

    png = tree["root"] / "plots" / "features.png"
    _npy_garbage(tree)  # a broken sidecar is left out of the histograms, not fatal
    assert A.main([str(tree["tokens"]), *QUIET, "--plot", str(png), "--fail-on", "none"]) == 0
    img = mpimg.imread(png)
    assert img.shape[:2] == (300, 800)  # 2 features: a 1 x 2 grid of 4 x 3 inch cells at 100 dpi
    assert not list(png.parent.glob(".*"))  # no temp file left behind

    result = audit(tree["tokens"])
    assert set(result.features) == {"pitch", "ramp"}
    assert result.features["pitch"].frames == sum(
        read_ecdc_header(tree["tokens"] / k).num_frames for k in tree["keys"] if k != tree["victim"])


def test_histogram_figure_layout() -> None:
    edges = np.linspace(0, 1, 11)
    summaries = {f"f{i}": A.FeatureSummary(units=u) for i, u in enumerate(["hz", None, "db", "s", "x"])}
    hists = {n: (np.arange(10), edges) for n in summaries}
    fig = A.make_histogram_figure(hists, summaries)
    assert len(fig.axes) == 5  # a 3 x 2 grid with the spare cell removed
    assert tuple(fig.get_size_inches()) == (12.0, 6.0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["f0 [hz]", "f1 [no units]", "f2 [db]", "f3 [s]", "f4 [x]"]
    assert len(A.make_histogram_figure({}).axes) == 0


def test_runs_as_script_module_and_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    for cmd in ([sys.executable, str(REPO / "workflow" / "sidecar_audit.py"), "--help"],
                [sys.executable, "-m", "workflow.sidecar_audit", "--help"],
                [str(Path(sys.executable).parent / "wf-sidecar-audit"), "--help"]):
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        assert all(f in res.stdout for f in ("--verify-ranges", "--fail-on", "--plot", "range_above_max"))


def test_v1_sidecar_passes_and_its_range_is_checked(tree) -> None:
    arr = np.load(tree["npy"])
    v1 = {"names": ["pitch", "ramp"], "norm": {"pitch": {"min": 0, "max": 127}}, "fps": 75,
          "frames": int(arr.shape[0])}
    tree["json"].write_text(json.dumps(v1))
    assert by_file(audit(tree["tokens"], verify_ranges=True, require=("pitch", "ramp"))) == {}
    _pitch_above_max(tree)
    assert by_file(audit(tree["tokens"], verify_ranges=True)) == {tree["victim"]: {"range_above_max"}}


def test_audits_what_s3_and_s4_write(token_copy, tmp_path: Path, capsys) -> None:
    """s3's empty [T, 0] sidecars pass, then fail --require until s4 adds the columns; s4's
    float16 columns (const 0.3 is not a float16) pass --verify-ranges and are plotted."""
    import matplotlib.image as mpimg

    from workflow import s3_sidecar_init, s4_sidecar_add

    tokens, cond = token_copy["tokens"], tmp_path / "cond"
    roots = ["--audio-root", str(tokens), "--cond-root", str(cond), "--no-progress"]
    assert s3_sidecar_init.main(roots) == 0
    base = [*roots, "--workers", "1", "--expect-fps", "75", "--expect-dtype", "float16", "--verify-ranges"]
    assert A.main(base) == 0
    capsys.readouterr()
    assert A.main([*base, "--require", "pitch,progress"]) == 1
    out = capsys.readouterr().out
    n = len(discover(tokens, [".ecdc"]))
    assert "missing pitch, progress (has: none)" in out and f"{n} issue(s) in {n} file(s)" in out

    assert s4_sidecar_add.main([*roots, "--producer", "from_filename", "--filename-keys", "pitch",
                                "--producer", "lin",
                                "--lin", "progress=0:1", "--producer", "const", "--const", "gain=0.3"]) == 0
    png = tmp_path / "features.png"
    assert A.main([*base, "--require", "pitch,progress,gain", "--plot", str(png)]) == 0
    result = audit(tokens)  # looking beside the tokens: no sidecars there
    assert {i.issue for i in result.issues} == {"missing_sidecar"}
    feats = A.run_audit(tokens, A.AuditConfig(), cond_root=cond,
                        options=RunOptions(workers=1, progress=False)).features
    assert {"pitch", "progress", "gain"} <= set(feats)
    ncols = int(np.ceil(np.sqrt(len(feats))))
    nrows = int(np.ceil(len(feats) / ncols))
    assert mpimg.imread(png).shape[:2] == (300 * nrows, 400 * ncols)


def test_mixed_feature_lists_and_codecs_fail_the_audit(token_copy, capsys) -> None:
    """Issue 13 item 9: the tree wf-build-dataset refuses (different feature lists) is not
    'no issues': mixed_features on the odd files, exit 1; another codec layout is mixed_codec."""
    from workflow import ecdc as E
    from workflow.hfdata import build, BuildConfig
    from workflow.errors import DatasetError

    from .test_s5_build_dataset import _mixed_tree

    tokens = token_copy["tokens"]
    keys = _mixed_tree(tokens)
    with pytest.raises(DatasetError):
        build(BuildConfig(tokens, token_copy["root"] / "ds", workers=1))
    rc = A.main(["--audio-root", str(tokens), *QUIET])
    out = capsys.readouterr().out
    assert rc == 1 and "mixed_features" in out
    assert by_file(audit(tokens)) == {k: {"mixed_features"} for k in keys[:3]}
    assert "--drop chirp --drop to" in audit(tokens).issues[0].detail

    tok = E.read_ecdc(tokens / keys[4])  # one file with 4 of the 8 codebooks: s5 leaves it out
    extra = {k: v for k, v in tok.header.meta.items() if k not in E.RESERVED_KEYS}
    E.write_ecdc(tokens / keys[4], tok.codes[:4], model=tok.header.model,
                 audio_length=tok.header.audio_length, bits=tok.header.bits, extra=extra)
    assert by_file(audit(tokens))[keys[4]] == {"mixed_codec"}
