"""sidecar.py: the .cond.npy/.cond.json pair, schema v2 (and v1 upgrade), merge and stats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workflow import sidecar as S
from workflow.errors import SidecarError


def test_paths(tmp_path: Path) -> None:
    e = tmp_path / "tok" / "a" / "kick_vel_64_pitch_60.5.ecdc"
    assert S.sidecar_path_for(e, tmp_path / "tok") == tmp_path / "tok/a/kick_vel_64_pitch_60.5.cond.npy"
    assert S.sidecar_path_for(e, tmp_path / "tok", tmp_path / "cond") == tmp_path / "cond/a/kick_vel_64_pitch_60.5.cond.npy"
    assert S.json_path_for(tmp_path / "x.cond.npy") == tmp_path / "x.cond.json"
    assert S.json_path_for(tmp_path / "x.feat.npy") == tmp_path / "x.feat.json"
    with pytest.raises(SidecarError):
        S.sidecar_path_for(e, tmp_path / "tok", suffix=".cond")


def test_init_append_overwrite_roundtrip(tmp_path: Path) -> None:
    p = tmp_path / "x.cond.npy"
    sc = S.write_sidecar(p, S.empty_sidecar(5, 75.0, "x.ecdc"))
    assert np.load(p).shape == (5, 0)
    meta = json.loads(S.json_path_for(p).read_text())
    assert meta["schema_version"] == 2 and meta["frames"] == 5 and meta["features"] == {}

    pitch = S.FeatureInfo(units="midi", doc_string="note", min=0.0, max=127.0, producer="from_filename",
                          range_from="producer")
    sc = S.merge_features(sc, {"pitch": (np.full(5, 60.5), pitch)})
    sc = S.merge_features(sc, {"ramp": (np.linspace(0, 1, 5), S.FeatureInfo(producer="lin"))})
    S.write_sidecar(p, sc)
    back = S.read_sidecar(p)
    assert back.names == ["pitch", "ramp"] and back.values.dtype == np.float32
    assert np.load(p).dtype == np.float16
    np.testing.assert_allclose(back.column("ramp"), np.linspace(0, 1, 5), atol=1e-3)
    f = back.features["pitch"]
    assert (f.min, f.max, f.units, f.range_from) == (0.0, 127.0, "midi", "producer")  # user range kept
    assert f.mean == pytest.approx(60.5) and f.std == pytest.approx(0.0)
    r = back.features["ramp"]
    assert (r.min, r.max, r.range_from) == (0.0, 1.0, "data")

    with pytest.raises(SidecarError, match="already present"):
        S.merge_features(back, {"pitch": (np.zeros(5), S.FeatureInfo())})
    # Overwrite replaces the column in place and keeps the user's units and range.
    over = S.merge_features(back, {"pitch": (np.full(5, 62.0), S.FeatureInfo(producer="const"))}, mode="overwrite")
    assert over.names == ["pitch", "ramp"]
    assert over.features["pitch"].units == "midi" and over.features["pitch"].max == 127.0
    np.testing.assert_array_equal(over.column("pitch"), np.full(5, 62.0, np.float32))


def test_bad_values_are_refused_with_producer_and_file(tmp_path: Path) -> None:
    sc = S.empty_sidecar(4, 75.0, "a/b.ecdc")
    with pytest.raises(SidecarError, match=r"producer 'p'.*shape \(3,\).*\[4\]"):
        S.merge_features(sc, {"x": (np.zeros(3), S.FeatureInfo(producer="p"))}, where="a/b.ecdc")
    with pytest.raises(SidecarError, match="NaN/Inf"):
        S.merge_features(sc, {"x": (np.array([0, np.nan, 0, 0]), S.FeatureInfo(producer="p"))})
    big = S.merge_features(sc, {"x": (np.full(4, 1e6), S.FeatureInfo())})
    with pytest.raises(SidecarError, match="float32"):
        S.write_sidecar(tmp_path / "b.cond.npy", big)
    S.write_sidecar(tmp_path / "b.cond.npy", big, dtype="float32")
    assert not (tmp_path / "c.cond.npy").exists()
    # A scalar is broadcast to every frame.
    assert S.merge_features(sc, {"c": (3.0, S.FeatureInfo())}).column("c").tolist() == [3.0] * 4


def test_read_errors_and_v1_upgrade(tmp_path: Path) -> None:
    p = tmp_path / "v1.cond.npy"
    np.save(p, np.array([[1, 2], [3, 4]], np.float16))
    S.json_path_for(p).write_text(json.dumps({"names": ["a", "b"], "norm": {"a": {"min": 0, "max": 10}},
                                              "fps": 75, "frames": 2}))
    sc = S.read_sidecar(p)
    assert sc.names == ["a", "b"] and sc.features["a"].max == 10.0 and sc.features["a"].range_from == "producer"
    assert sc.features["b"].range_from == "data"
    S.write_sidecar(p, sc)
    assert json.loads(S.json_path_for(p).read_text())["schema_version"] == 2

    np.save(p, np.zeros((3, 2), np.float16))  # rows no longer match "frames"
    with pytest.raises(SidecarError, match="rows"):
        S.read_sidecar(p)
    S.json_path_for(p).write_text("{not json")
    with pytest.raises(SidecarError, match="unreadable"):
        S.read_sidecar(p)
    with pytest.raises(SidecarError, match="wf-sidecar-init"):
        S.read_sidecar(tmp_path / "missing.cond.npy")


def test_combine_stats_and_stored_precision() -> None:
    a = S.FeatureInfo(min=0, max=1, mean=0.0, std=1.0, range_from="data")
    b = S.FeatureInfo(min=-2, max=5, mean=2.0, std=1.0, range_from="data")
    c = S.combine_stats([(a, 100), (b, 100)])
    assert (c.min, c.max, c.mean) == (-2, 5, 1.0) and c.std == pytest.approx(np.sqrt(2.0))
    p = S.FeatureInfo(min=0, max=127, mean=60, std=0, range_from="producer")
    assert S.combine_stats([(p, 3), (p, 4)]).range_from == "producer"
    # 0.1 is not representable in float16; a stored value equals the rounded bound, not a violation.
    assert S.in_stored_precision(0.1, "float16") == float(np.float16(0.1))


def test_header_only_read_agrees_with_the_full_read(tmp_path: Path) -> None:
    npy = tmp_path / "a.cond.npy"
    sc = S.merge_features(S.empty_sidecar(7, 75.0, "a.ecdc"), {
        "x": (np.arange(7.0), S.FeatureInfo(units="dB")), "y": (np.ones(7), S.FeatureInfo())})
    S.write_sidecar(npy, sc)
    full = S.read_sidecar(npy)
    frames, fps, feats = S.read_sidecar_header(npy)
    assert (frames, fps, list(feats)) == (full.frames, full.fps, full.names) == (7, 75.0, ["x", "y"])
    assert feats == full.features
    np.save(npy, np.zeros((6, 2), np.float16))  # the array no longer matches its metadata
    with pytest.raises(SidecarError, match="6 rows but metadata says 7"):
        S.read_sidecar_header(npy)
    np.save(npy, np.zeros((7, 3), np.float16))
    with pytest.raises(SidecarError, match=r"expected \[T, 2\]"):
        S.read_sidecar_header(npy)
    npy.unlink()
    with pytest.raises(SidecarError, match="array missing"):
        S.read_sidecar_header(npy)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_windowed_rows_equal_the_full_read(tmp_path: Path, dtype: str) -> None:
    npy = tmp_path / "a.cond.npy"
    rng = np.random.default_rng(0)
    sc = S.merge_features(S.empty_sidecar(40, 75.0, "a.ecdc", dtype=dtype), {
        "x": (rng.normal(size=40), S.FeatureInfo(units="dB")), "y": (rng.uniform(size=40), S.FeatureInfo())})
    S.write_sidecar(npy, sc)
    full = S.read_sidecar(npy).values
    layout = S.rows_layout(npy)
    assert layout is not None and layout.names == ("x", "y") and layout.frames == 40
    assert layout.dtype == np.dtype(dtype).str and layout.file_size == npy.stat().st_size
    for start, n in ((0, 40), (0, 0), (3, 7), (39, 1), (40, 0)):
        got = S.read_rows(str(npy), layout, start, n)
        assert got.dtype == np.float32 and got.shape == (n, 2) and got.flags.writeable
        np.testing.assert_array_equal(got, full[start:start + n])
    with pytest.raises(SidecarError, match="outside the sidecar's 40 frames"):
        S.read_rows(npy, layout, 35, 6)
    # a pair rewritten with more frames: the old layout is refused, a fresh one reads it
    S.write_sidecar(npy, S.merge_features(S.empty_sidecar(41, 75.0, "a.ecdc", dtype=dtype), {
        "x": (np.zeros(41), S.FeatureInfo()), "y": (np.ones(41), S.FeatureInfo())}))
    with pytest.raises(SidecarError, match="changed while in use"):
        S.read_rows(npy, layout, 0, 5)
    np.testing.assert_array_equal(S.read_rows(npy, S.rows_layout(npy), 36, 5), np.tile([0.0, 1.0], (5, 1)))
    npy.unlink()
    with pytest.raises(SidecarError, match="array missing"):
        S.read_rows(npy, layout, 0, 5)


def test_layouts_the_windowed_reader_leaves_to_the_full_read(tmp_path: Path) -> None:
    npy = tmp_path / "a.cond.npy"
    S.write_sidecar(npy, S.merge_features(S.empty_sidecar(6, 75.0, "a.ecdc"), {
        "x": (np.arange(6.0), S.FeatureInfo()), "y": (np.ones(6), S.FeatureInfo())}))
    np.save(npy, np.asfortranarray(np.arange(12, dtype=np.float32).reshape(6, 2)))
    assert S.rows_layout(npy) is None  # column-major: read whole
    np.save(npy, np.zeros((6, 2), np.float64))
    assert S.rows_layout(npy) is None
    np.save(npy, np.zeros((5, 2), np.float32))
    with pytest.raises(SidecarError, match="5 rows but metadata says 6"):
        S.rows_layout(npy)


@pytest.mark.parametrize("array", [
    np.zeros((0, 0), np.float16), np.arange(12, dtype=np.float32).reshape(6, 2),
    np.ones((100_000, 3), ">f4"), np.asfortranarray(np.ones((4, 3), np.float32)),
    np.zeros((5,), np.float32), np.zeros((2, 3, 4), np.float16), np.zeros((3, 2), np.int16)])
def test_npy_header_fast_parse_agrees_with_numpy(tmp_path: Path, array: np.ndarray) -> None:
    """The regular-expression header parse gives numpy's answer, or hands over to numpy."""
    npy = tmp_path / "a.npy"
    np.save(npy, array)
    shape, fortran, dtype, offset = S._npy_header(npy)
    with open(npy, "rb") as fh:
        np.lib.format.read_magic(fh)
        want = np.lib.format.read_array_header_1_0(fh)
        assert offset == fh.tell()
    assert (shape, fortran, dtype) == want
    data = npy.read_bytes()[offset:]
    got = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    np.testing.assert_array_equal(got, array)


def test_load_npy_matches_np_load_and_refuses_what_it_refuses(tmp_path: Path) -> None:
    npy = tmp_path / "a.npy"
    for array in (np.arange(12, dtype=np.float16).reshape(6, 2), np.zeros((0, 3), np.float32),
                  np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3)), np.ones(5, ">f4")):
        np.save(npy, array)
        for mmap in (False, True):
            got = S.load_npy(npy, mmap=mmap)
            assert got.dtype == array.dtype and got.shape == array.shape
            np.testing.assert_array_equal(got, np.load(npy))
    np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        S.load_npy(npy)
    np.save(npy, np.ones((50, 2), np.float32))
    with open(npy, "r+b") as fh:
        fh.truncate(npy.stat().st_size - 8)
    with pytest.raises(ValueError, match="truncated"):
        S.load_npy(npy)


def test_sidecars_read_from_many_threads_at_once(tmp_path: Path) -> None:
    """numpy's header parser (ast.literal_eval) is not thread-safe on CPython 3.11; s5 --embed
    and s4 --executor thread read sidecars from threads. Headers it must parse (column-major
    arrays) and those parsed here are read concurrently, every result checked."""
    from concurrent.futures import ThreadPoolExecutor

    paths = []
    for i in range(64):
        npy = tmp_path / f"f{i}.cond.npy"
        S.write_sidecar(npy, S.merge_features(S.empty_sidecar(30, 75.0, f"f{i}.ecdc", dtype="float32"), {
            "x": (np.full(30, float(i)), S.FeatureInfo()), "y": (np.arange(30.0), S.FeatureInfo())}))
        if i % 2:
            np.save(npy, np.asfortranarray(np.load(npy)))
        paths.append(npy)
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            for i, sc in enumerate(pool.map(S.read_sidecar, paths)):
                assert sc.values.shape == (30, 2) and (sc.values[:, 0] == i).all()
