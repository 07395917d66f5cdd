"""TokenCondDataset + collate on real datasets built by s5 from real s2 tokens (no mocks)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from workflow import s5_build_dataset_from_folder as s5
from workflow.ecdc import read_ecdc, read_ecdc_header
from workflow.errors import DatasetError
from workflow.hfdata import read_dataset_meta, resolve_path
from workflow.sidecar import FeatureInfo, empty_sidecar, merge_features, read_sidecar, sidecar_path_for, write_sidecar
from workflow.torchdata import PAD_ID, TokenCondDataset, collate, make_collate

FEATURES = ("ramp", "level", "const")
WINDOW = 20
_BUILT: dict[Path, dict[str, Path]] = {}


def add_sidecars(tokens: Path, skip: int = 1) -> list[Path]:
    """Sidecars for every token file but the first ``skip``: a ramp with a producer range 0..127
    (hits 63.5 at frame 67), a per-file level (so data ranges differ per file) and a constant."""
    files = sorted(tokens.rglob("*.ecdc"))
    for i, path in enumerate(files[skip:]):
        head = read_ecdc_header(path)
        t = head.num_frames
        frames = np.arange(t, dtype=np.float32)
        sc = empty_sidecar(t, head.fps, path.relative_to(tokens).as_posix())
        sc = merge_features(sc, {
            "ramp": (0.5 * (frames + 60), FeatureInfo(units="midi", min=0.0, max=127.0,
                                                      range_from="producer", producer="test")),
            "level": (10.0 * i + np.linspace(0, 5, t, dtype=np.float32), FeatureInfo(units="dB")),
            "const": (np.full(t, 3.0, np.float32), FeatureInfo()),
        })
        write_sidecar(sidecar_path_for(path, tokens), sc)
    return files


def build_datasets(token_tree: dict[str, Path], tmp_path_factory) -> dict[str, Path]:
    """tokens (+ sidecars) → ``plain`` and ``embedded`` datasets (one split, ``train``), built once
    per session and shared by the test modules (read-only: copy before modifying)."""
    key = token_tree["root"]
    if key in _BUILT:
        return _BUILT[key]
    root = tmp_path_factory.mktemp("torchdata")
    tokens = root / "tokens"
    shutil.copytree(token_tree["tokens"], tokens, ignore=shutil.ignore_patterns(".reports"))
    files = add_sidecars(tokens)
    out = {"tokens": tokens, "nosidecar": files[0]}
    for name, extra in (("plain", []), ("embedded", ["--embed"])):
        out[name] = root / name
        assert s5.main([str(tokens), str(out[name]), "--no-progress", "--workers", "2", *extra]) == 0
    _BUILT[key] = out
    return out


@pytest.fixture(scope="session")
def built(token_tree, tmp_path_factory) -> dict[str, Path]:
    return build_datasets(token_tree, tmp_path_factory)


def assert_same_items(a: TokenCondDataset, b: TokenCondDataset, seeds: int) -> None:
    """Every item of ``a`` and ``b`` is identical under the same torch seed (crops included)."""
    assert len(a) == len(b)
    for seed in range(seeds):
        torch.manual_seed(seed)
        xs = [a[i] for i in range(len(a))]
        torch.manual_seed(seed)
        ys = [b[i] for i in range(len(b))]
        for x, y in zip(xs, ys):
            assert (x["id"], x["start"], x["length"]) == (y["id"], y["start"], y["length"])
            assert torch.equal(x["codes"], y["codes"]) and torch.equal(x["cond"], y["cond"])


def expected_norm(meta: dict, values: np.ndarray) -> np.ndarray:
    """Independent reimplementation of the documented normalisation (dataset-wide, clipped)."""
    out = np.zeros_like(values, dtype=np.float32)
    for j, name in enumerate(meta["feature_order"]):
        lo, hi = meta["features"][name]["min"], meta["features"][name]["max"]
        out[:, j] = 0.0 if hi == lo else np.clip((values[:, j] - lo) / (hi - lo), 0, 1)
    return out


def test_window_is_aligned_with_the_files(built):
    ds = TokenCondDataset(built["plain"], "train", window_frames=WINDOW)
    meta = read_dataset_meta(built["plain"])
    assert ds.feature_names == list(FEATURES) == meta["feature_order"]
    assert len(ds) == len(list(built["tokens"].rglob("*.ecdc")))
    torch.manual_seed(0)
    starts = set()
    for i in range(len(ds)):
        row = ds.row(i)
        item = ds[i]
        s, n = item["start"], item["length"]
        starts.add(s)
        codes = read_ecdc(resolve_path(built["plain"], row["audio"])).codes
        assert n == WINDOW and 0 <= s <= codes.shape[1] - WINDOW
        assert item["codes"].dtype == torch.long and item["codes"].shape == (8, WINDOW)
        assert np.array_equal(item["codes"].numpy(), codes[:, s:s + n])
        assert item["cond"].dtype == torch.float32
        if row["cond"] is None:
            assert item["cond"].shape == (WINDOW, 0)
            continue
        raw = read_sidecar(resolve_path(built["plain"], row["cond"])).values
        assert raw.shape[0] == codes.shape[1]
        np.testing.assert_allclose(item["cond"].numpy(), expected_norm(meta, raw[s:s + n]), atol=1e-6)
    assert len(starts) > 1  # random crops


def test_normalisation_uses_dataset_wide_ranges(built):
    ds = TokenCondDataset(built["plain"], "train")
    meta = read_dataset_meta(built["plain"])
    assert ds.feature_ranges["ramp"] == (0.0, 127.0)  # the producer's range, not the data's
    lo, hi = ds.feature_ranges["level"]
    per_file_max = []
    for i in range(len(ds)):
        item = ds[i]  # no window: the whole row
        assert item["start"] == 0 and item["length"] == ds.row(i)["num_frames"]
        if item["cond"].shape[1] == 0:
            continue
        cond = item["cond"].numpy()
        assert cond[67, 0] == 0.5  # 63.5 on the producer range 0..127
        assert np.all(cond[:, 2] == 0.0)  # max == min → 0
        assert cond.min() >= 0.0 and cond.max() <= 1.0
        per_file_max.append(float(cond[:, 1].max()))
    # one range for the whole dataset: only the file holding the largest level reaches 1
    assert max(per_file_max) == pytest.approx(1.0, abs=1e-3)
    assert min(per_file_max) < 0.5
    assert lo == pytest.approx(meta["features"]["level"]["min"])
    raw = TokenCondDataset(built["plain"], "train", normalize_cond=False)
    j = next(i for i in range(len(raw)) if raw.row(i)["cond"])
    assert float(raw[j]["cond"][67, 0]) == 63.5


def test_embedded_and_files_give_identical_items(built):
    emb = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW)
    files = TokenCondDataset(built["plain"], "train", window_frames=WINDOW)
    emb_as_files = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW, source="files")
    assert emb.embedded_codes and emb.embedded_cond and not files.embedded_codes
    assert not emb_as_files.embedded_codes
    assert [emb.row(i)["id"] for i in range(len(emb))] == [files.row(i)["id"] for i in range(len(files))]
    for i in range(len(emb)):
        for start in (0, 7, 10_000):
            a, b, c = emb.window(i, start, WINDOW), files.window(i, start, WINDOW), emb_as_files.window(i, start, WINDOW)
            assert a["id"] == b["id"] == c["id"] and a["start"] == b["start"] == c["start"]
            assert torch.equal(a["codes"], b["codes"]) and torch.equal(a["codes"], c["codes"])
            assert torch.equal(a["cond"], b["cond"]) and torch.equal(a["cond"], c["cond"])
    # embedded arrays are int16/float32 views of the memory-mapped table, not int64 copies
    codes, cond, _ = emb.read_item(len(emb) - 1)
    assert codes.dtype == np.int16 and not codes.flags.owndata
    assert cond.dtype == np.float32 and not cond.flags.owndata
    # the fallback for Arrow layouts the zero-copy reader does not know: datasets' formatter
    slow = TokenCondDataset(built["embedded"], "train")
    handle = slow._open()
    handle.matrices.update(codes=None, cond_values=None)
    for i in range(len(slow)):
        (c1, v1, _), (c2, v2, _) = emb.read_item(i), slow.read_item(i)
        assert c2.dtype == np.int16 and v2.dtype == np.float32
        assert np.array_equal(c1, c2) and np.array_equal(v1, v2)


def test_crop_modes_and_short_items(built):
    fixed = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW, random_crop=False)
    assert {fixed[i]["start"] for i in range(len(fixed))} == {0}
    long = TokenCondDataset(built["embedded"], "train", window_frames=10_000)
    for i in range(len(long)):
        item = long[i]
        assert item["start"] == 0 and item["length"] == long.row(i)["num_frames"]  # returned whole
    plain = TokenCondDataset(built["plain"], "train")
    assert {plain[0]["length"], plain[0]["start"]} == {plain.row(0)["num_frames"], 0}


def test_row_without_sidecar_and_collate(built):
    ds = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW)
    nosc = next(i for i in range(len(ds)) if ds.row(i)["cond"] is None)
    other = next(i for i in range(len(ds)) if ds.row(i)["cond"] is not None)
    assert ds[nosc]["cond"].shape == (WINDOW, 0)
    bare = ds.window(nosc, 0, WINDOW)
    short = ds.window(other, 5, 7)
    full = ds.window(other, 0, WINDOW)
    batch = collate([short, bare, full])
    assert batch["codes"].shape == (3, 8, WINDOW) and batch["codes"].dtype == torch.long
    assert batch["cond"].shape == (3, WINDOW, 3) and batch["mask"].shape == (3, WINDOW)
    assert batch["mask"].dtype == torch.bool
    assert batch["lengths"].tolist() == [7, WINDOW, WINDOW] and batch["start"].tolist() == [5, 0, 0]
    assert batch["mask"][0].tolist() == [True] * 7 + [False] * (WINDOW - 7)
    assert batch["mask"][1:].all()
    assert torch.equal(batch["codes"][0, :, :7], short["codes"])
    assert (batch["codes"][0, :, 7:] == PAD_ID).all() and (batch["codes"][1:] >= 0).all()
    assert torch.equal(batch["cond"][0, :7], short["cond"]) and (batch["cond"][0, 7:] == 0).all()
    assert (batch["cond"][1] == 0).all() and batch["has_cond"].tolist() == [True, False, True]
    assert batch["id"] == [short["id"], bare["id"], full["id"]]
    assert (make_collate(1024)([short, full])["codes"][0, :, 7:] == 1024).all()


def test_dataloader_with_workers(built):
    ds = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW)
    clone = pickle.loads(pickle.dumps(ds))
    assert "_handle" not in pickle.loads(pickle.dumps(ds)).__dict__
    assert torch.equal(clone.window(1, 3, 5)["codes"], ds.window(1, 3, 5)["codes"])
    files = TokenCondDataset(built["plain"], "train", window_frames=WINDOW)
    for d in (ds, files):
        dl = DataLoader(d, batch_size=3, shuffle=True, num_workers=2, collate_fn=collate)
        seen = []
        for batch in dl:
            assert batch["codes"].shape[1:] == (8, WINDOW) and batch["mask"].all()
            seen += batch["id"]
        assert sorted(seen) == sorted(d.row(i)["id"] for i in range(len(d)))


def test_errors_are_clear(built, tmp_path):
    with pytest.raises(DatasetError, match="no split 'nope'"):
        TokenCondDataset(built["plain"], "nope")
    with pytest.raises(DatasetError, match="--embed"):
        TokenCondDataset(built["plain"], "train", source="embedded")
    with pytest.raises(DatasetError, match="not found|missing"):
        TokenCondDataset(tmp_path / "none", "train")
    with pytest.raises(ValueError):
        TokenCondDataset(built["plain"], "train", window_frames=0)
    ds = TokenCondDataset(built["plain"], "train")
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(DatasetError, match="codebook"):
        collate([ds.window(0, 0, 4), {**ds.window(1, 0, 4), "codes": torch.zeros(2, 4, dtype=torch.long)}])


def test_large_sidecars_are_memory_mapped_with_the_same_result(built, monkeypatch):
    from workflow import torchdata

    small = TokenCondDataset(built["plain"], "train", window_frames=WINDOW)
    expected = [small.window(i, 9, WINDOW) for i in range(len(small))]
    monkeypatch.setattr(torchdata, "MMAP_MIN_BYTES", 0)
    mapped = TokenCondDataset(built["plain"], "train", window_frames=WINDOW)
    assert torchdata._worth_mmap(resolve_path(built["plain"], mapped.row(1)["cond"]))
    for i, want in enumerate(expected):
        got = mapped.window(i, 9, WINDOW)
        assert torch.equal(got["codes"], want["codes"]) and torch.equal(got["cond"], want["cond"])


def test_flat_buffers_are_the_fast_path_and_are_checked(built, tmp_path):
    import json

    from workflow.hfdata.flat import FLAT_DIR, INDEX_FILE, INFO_FILE

    ds = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW)
    assert ds._open().flat is not None
    arrow_only = tmp_path / "arrow_only"
    shutil.copytree(built["embedded"], arrow_only, symlinks=True)
    shutil.rmtree(arrow_only / "train" / FLAT_DIR)
    old = TokenCondDataset(arrow_only, "train", window_frames=WINDOW)
    assert old._open().flat is None  # datasets built before the flat buffers are still read
    assert_same_items(ds, old, seeds=3)
    assert ds.read_item(1)[2] == old.read_item(1)[2]  # same row fields through both readers
    # an index that disagrees with the Arrow rows is refused when the split is opened
    bad = tmp_path / "bad"
    shutil.copytree(built["embedded"], bad)  # links followed: source="files" reads the copies
    index_path = bad / "train" / FLAT_DIR / INDEX_FILE
    index = np.load(index_path)
    index[0, 2] += 1
    np.save(index_path, index)
    with pytest.raises(DatasetError, match="disagree with the Arrow rows"):
        TokenCondDataset(bad, "train")
    info = json.loads((bad / "train" / FLAT_DIR / INFO_FILE).read_text())
    (bad / "train" / FLAT_DIR / INFO_FILE).write_text(json.dumps({**info, "version": 99}))
    with pytest.raises(DatasetError, match="damaged.*rebuild"):
        TokenCondDataset(bad, "train")
    assert TokenCondDataset(bad, "train", source="files")[0]["codes"].shape[0] == 8


def test_file_rows_are_read_by_window_with_the_same_items(built, tmp_path):
    """Files are read by window (header layouts parsed once, then two preads per item): items
    equal the flat buffers' under the same seed; other layouts fall back to whole-file reads."""
    from workflow.ecdc import write_ecdc
    from workflow.errors import EcdcFormatError
    from workflow.torchdata import _FileLayouts

    emb = TokenCondDataset(built["embedded"], "train", window_frames=WINDOW)
    for window, crop in ((WINDOW, True), (WINDOW, False), (None, True)):
        plain = TokenCondDataset(built["plain"], "train", window_frames=window, random_crop=crop)
        ref = TokenCondDataset(built["embedded"], "train", window_frames=window, random_crop=crop)
        assert_same_items(plain, ref, seeds=2)
        assert (plain._open().layouts.state == _FileLayouts.WINDOWED).all()
    assert emb._open().layouts is None  # flat buffers never parse file layouts

    copy = tmp_path / "copy"
    shutil.copytree(built["plain"], copy)  # links followed: real files to rewrite
    ds = TokenCondDataset(copy, "train", window_frames=WINDOW)
    row = next(i for i in range(len(ds)) if ds.row(i)["cond"] is not None)
    cond_path = resolve_path(copy, ds.row(row)["cond"])
    sc = read_sidecar(cond_path)
    order = list(reversed(sc.names))  # same features, columns in another order: read whole
    write_sidecar(cond_path, merge_features(empty_sidecar(sc.frames, sc.fps, sc.source),
                                            {n: (sc.values[:, sc.names.index(n)], sc.features[n]) for n in order}))
    torch.manual_seed(5)
    got = ds[row]
    torch.manual_seed(5)
    want = TokenCondDataset(built["plain"], "train", window_frames=WINDOW)[row]
    assert torch.equal(got["cond"], want["cond"]) and torch.equal(got["codes"], want["codes"])
    assert ds._open().layouts.state[row] == _FileLayouts.WHOLE

    other = next(i for i in range(len(ds)) if i != row and ds.row(i)["cond"] is not None)
    bad = resolve_path(copy, ds.row(other)["cond"])
    sc = read_sidecar(bad)
    write_sidecar(bad, merge_features(empty_sidecar(sc.frames + 1, sc.fps, sc.source),
                                      {n: (np.r_[sc.values[:, j], 0.0], sc.features[n]) for j, n in enumerate(sc.names)}))
    with pytest.raises(DatasetError, match=rf"cond has {sc.frames + 1} frames but the codes have {sc.frames}"):
        ds[other]
    # a token file re-encoded while training: refused, naming the file
    last = next(i for i in range(len(ds)) if i not in (row, other))
    ds[last]
    audio = resolve_path(copy, ds.row(last)["audio"])
    write_ecdc(audio, np.zeros((8, 3), np.int64), model="encodec_24khz", audio_length=960, bits=10)
    with pytest.raises(EcdcFormatError, match=f"{audio.name}.*changed while in use"):
        ds[last]
