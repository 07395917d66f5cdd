"""hfdata: build / extend / load / verify the DatasetDict, on a real s1+s2 token tree."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow import ecdc, hfdata, sidecar
from workflow.errors import DatasetError, UsageError
from workflow.files import discover, relative_key

RATIOS = {"train": 0.6, "valid": 0.2, "test": 0.2}


# -- helpers --------------------------------------------------------------------------------------
def token_files(tokens: Path) -> list[Path]:
    return discover(tokens, [".ecdc"])


def add_sidecars(tokens: Path, cond_root: Path | None = None, skip: int = 0) -> dict[str, Path]:
    """A real two-feature sidecar pair per token file (the first ``skip`` files get none)."""
    out = {}
    for i, p in enumerate(token_files(tokens)):
        if i < skip:
            continue
        h = ecdc.read_ecdc_header(p)
        t = h.num_frames
        sc = sidecar.empty_sidecar(t, h.fps, relative_key(p, tokens))
        sc = sidecar.merge_features(sc, {
            "pitch": (np.linspace(40 + i, 60 + i, t),
                      sidecar.FeatureInfo(units="midi", doc_string="MIDI pitch", min=0.0, max=127.0,
                                          producer="test", range_from="producer")),
            "loudness": (np.sin(np.arange(t) * (i + 1)) * 6 - 20,
                         sidecar.FeatureInfo(units="dB", doc_string="frame loudness")),
        })
        npy = sidecar.sidecar_path_for(p, tokens, cond_root)
        npy.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_sidecar(npy, sc)
        out[relative_key(p, tokens)] = npy
    return out


def rewrite_with_frames(path: Path, frames: int, keep_codebooks: int | None = None) -> None:
    """Rewrite a token file in place with fewer frames (and optionally fewer codebooks)."""
    tok = ecdc.read_ecdc(path)
    h = tok.header
    extra = {k: v for k, v in h.meta.items() if k not in ecdc.RESERVED_KEYS}
    ecdc.write_ecdc(path, tok.codes[:keep_codebooks, :frames], model=h.model,
                    audio_length=frames * h.hop, bits=h.bits, extra=extra)


def build(tokens: Path, out: Path, **kw) -> hfdata.BuildResult:
    kw.setdefault("workers", 2)
    return hfdata.build(hfdata.BuildConfig(tokens, out, **kw))


def rows(ds: datasets.Dataset) -> list[dict]:
    return ds.select_columns([c for c in ds.column_names if c not in ("codes", "cond_values")]).to_list()


# -- columns, dtypes, values ----------------------------------------------------------------------
def test_columns_dtypes_and_values_match_the_headers(token_copy) -> None:
    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    out = token_copy["root"] / "ds"
    res = build(tokens, out)
    assert res.problems == [] and res.built == {"train": 7}

    dd = datasets.load_from_disk(str(out))  # plain datasets API
    assert isinstance(dd, datasets.DatasetDict) and list(dd) == ["train"]
    ds = dd["train"]
    dtypes = {name: getattr(f, "dtype", None) for name, f in ds.features.items()}
    assert dtypes == {"id": "string", "audio": "string", "cond": "string", "num_frames": "int32",
                      "num_codebooks": "int16", "fps": "float32", "sample_rate": "int32",
                      "duration": "float32", "codec": "string"}
    by_id = {r["id"]: r for r in rows(ds)}
    assert len(by_id) == 7
    for p in token_files(tokens):
        key = relative_key(p, tokens)
        r = by_id[key[: -len(".ecdc")]]
        h = ecdc.read_ecdc_header(p)
        assert r["audio"] == f"tokens/{key}"
        assert r["cond"] == f"tokens/{key[:-5]}.cond.npy"
        assert (r["num_frames"], r["num_codebooks"], r["sample_rate"], r["codec"]) == (
            h.num_frames, h.num_codebooks, h.sample_rate, h.model)
        assert r["fps"] == pytest.approx(h.fps) and r["duration"] == pytest.approx(h.duration, rel=1e-6)
        assert hfdata.resolve_path(out, r["audio"]).read_bytes() == p.read_bytes()
        assert hfdata.resolve_path(out, None) is None

    meta = hfdata.read_dataset_meta(out)
    h = ecdc.read_ecdc_header(token_files(tokens)[0])
    assert (meta["codec"], meta["fps"], meta["sample_rate"], meta["num_codebooks"]) == (
        "encodec_24khz", h.fps, h.sample_rate, h.num_codebooks)
    assert meta["weights"] == "random" and meta["embedded"] is False
    assert meta["feature_order"] == ["pitch", "loudness"]
    assert meta["features"]["pitch"]["units"] == "midi"
    assert (meta["features"]["pitch"]["min"], meta["features"]["pitch"]["max"]) == (0.0, 127.0)
    assert meta["features"]["loudness"]["range_from"] == "data"
    assert meta["features"]["loudness"]["min"] == pytest.approx(-26, abs=0.1)
    assert meta["splits"]["train"]["rows"] == 7
    assert meta["splits"]["train"]["hours"] == pytest.approx(sum(by_id[i]["duration"] for i in by_id) / 3600)
    assert hfdata.verify_dataset(out) == []
    assert hfdata.load_dataset_dir(out)["train"].num_rows == 7


def test_meta_file_card_and_split_descriptions(token_copy) -> None:
    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    out = token_copy["root"] / "ds"
    build(tokens, out, split_ratios=RATIOS)
    card = (out / hfdata.CARD_FILE).read_text()
    assert "RANDOM CODEC WEIGHTS" in card
    assert "| 0 | `pitch` | midi | 0 | 127 |" in card and "| 1 | `loudness` | dB |" in card
    assert "datasets.load_from_disk" in card and "| valid |" in card and "| test |" in card
    dd = hfdata.load_dataset_dir(out)
    meta = hfdata.read_dataset_meta(out)
    for split, ds in dd.items():
        desc = json.loads(ds.info.description)
        assert desc["split"] == split and desc["weights"] == "random"
        assert desc["feature_order"] == ["pitch", "loudness"]
        assert desc["features"]["pitch"]["units"] == "midi"
        assert desc["rows"] == ds.num_rows == meta["splits"][split]["rows"]
    assert sum(s["rows"] for s in meta["splits"].values()) == 7
    assert (out / ".reports").is_dir() and any((out / ".reports").iterdir())
    assert oct(os.stat(out / hfdata.META_FILE).st_mode & 0o044) != "0o0"  # not private


# -- materialize modes ----------------------------------------------------------------------------
def test_link_mode_uses_relative_links_that_survive_moving_the_project(token_copy, tmp_path) -> None:
    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    out = token_copy["root"] / "ds"
    build(tokens, out, wav_root=token_copy["norm"])
    ds = hfdata.load_dataset_dir(out)["train"]
    first = rows(ds)[0]
    for col in ("audio", "cond", "wav"):
        link = out / first[col]
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert sidecar.json_path_for(out / first["cond"]).is_symlink()  # the pair

    moved_root = tmp_path.parent / (tmp_path.name + "_moved")
    shutil.move(str(tmp_path), str(moved_root))
    try:
        moved = moved_root / "ds"
        ds = hfdata.load_dataset_dir(moved)["train"]
        for r in rows(ds):
            audio = hfdata.resolve_path(moved, r["audio"])
            assert str(audio).startswith(str(moved)) and audio.exists()
            assert ecdc.read_ecdc(audio).codes.shape == (r["num_codebooks"], r["num_frames"])
            assert sidecar.read_sidecar(hfdata.resolve_path(moved, r["cond"])).frames == r["num_frames"]
            assert hfdata.resolve_path(moved, r["wav"]).is_file()
        assert hfdata.verify_dataset(moved) == []
        (moved_root / "ds").rename(moved_root / "ds_renamed")  # renaming in place keeps links too
        assert hfdata.verify_dataset(moved_root / "ds_renamed") == []
    finally:
        shutil.move(str(moved_root), str(tmp_path))


def test_copy_mode_is_self_contained(token_copy) -> None:
    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    out = token_copy["root"] / "ds"
    build(tokens, out, materialize="copy")
    shutil.rmtree(tokens)  # the sources are gone; the dataset still works
    for r in rows(hfdata.load_dataset_dir(out)["train"]):
        p = hfdata.resolve_path(out, r["audio"])
        assert p.is_file() and not p.is_symlink()
        assert not hfdata.resolve_path(out, r["cond"]).is_symlink()
    assert hfdata.verify_dataset(out) == []


def test_none_mode_points_at_the_sources(token_copy) -> None:
    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    out = token_copy["root"] / "ds"
    build(tokens, out, materialize="none", wav_root=token_copy["norm"])
    assert not (out / "tokens").exists() and not (out / "wav").exists()
    for r in rows(hfdata.load_dataset_dir(out)["train"]):
        assert r["audio"] == f"../tokens/{r['id']}.ecdc"
        assert r["cond"] == f"../tokens/{r['id']}.cond.npy"
        assert r["wav"] == f"../norm/{r['id']}.wav"
        assert hfdata.resolve_path(out, r["audio"]) == tokens / f"{r['id']}.ecdc"
    assert hfdata.verify_dataset(out) == []


def test_cond_root_elsewhere_and_rows_without_sidecar(token_copy) -> None:
    tokens, cond = token_copy["tokens"], token_copy["root"] / "cond"
    made = add_sidecars(tokens, cond_root=cond, skip=2)
    assert all(str(p).startswith(str(cond)) for p in made.values())
    out = token_copy["root"] / "ds"
    res = build(tokens, out, cond_root=cond)
    assert res.problems == []
    rs = rows(res.dataset["train"])
    with_cond = [r for r in rs if r["cond"] is not None]
    assert len(with_cond) == 5 and len(rs) == 7
    for r in with_cond:
        npy = out / r["cond"]
        assert npy.is_symlink() and sidecar.json_path_for(npy).is_symlink()
        assert sidecar.read_sidecar(npy).names == ["pitch", "loudness"]
    assert res.meta["splits"]["train"]["rows_with_cond"] == 5
    assert build(tokens, token_copy["root"] / "ds2").meta["feature_order"] == []  # not found beside tokens


def test_wav_column(token_copy) -> None:
    tokens, norm = token_copy["tokens"], token_copy["norm"]
    out = token_copy["root"] / "ds"
    ds = build(tokens, out, wav_root=norm).dataset["train"]
    assert ds.features["wav"].dtype == "string"
    for r in rows(ds):
        assert r["wav"] == f"wav/{r['id']}.wav"
        assert hfdata.resolve_path(out, r["wav"]).read_bytes() == (norm / f"{r['id']}.wav").read_bytes()
    (norm / f"{rows(ds)[0]['id']}.wav").unlink()  # a missing wav is a reported problem
    res = build(tokens, token_copy["root"] / "ds2", wav_root=norm)
    assert [k for k, _ in res.problems] == [f"{rows(ds)[0]['id']}.ecdc"] and res.built == {"train": 6}


# -- embedded columns -----------------------------------------------------------------------------
def test_embed_codes_and_cond_values_are_exact(token_copy) -> None:
    tokens = token_copy["tokens"]
    npys = add_sidecars(tokens, skip=1)
    out = token_copy["root"] / "ds"
    res = build(tokens, out, embed=True, materialize="none")
    ds = res.dataset["train"]
    assert res.meta["embedded"] is True
    assert ds.features["codes"] == datasets.List(datasets.List(datasets.Value("int16")))
    arrow = ds.with_format("arrow")
    np_codes = ds.with_format("numpy", columns=["codes"], dtype=np.int16)
    n_none = 0
    for i, r in enumerate(rows(ds)):
        want = ecdc.read_ecdc(tokens / f"{r['id']}.ecdc").codes
        got = hfdata.arrow_row_to_numpy(arrow[i])
        assert got["codes"].dtype == np.int16 and np.array_equal(got["codes"], want)
        fast = np_codes[i]["codes"]
        assert fast.dtype == np.int16 and np.array_equal(fast, want)
        key = f"{r['id']}.ecdc"
        if key in npys:
            vals = sidecar.read_sidecar(npys[key]).values
            assert got["cond_values"].dtype == np.float32 and got["cond_values"].shape == vals.shape
            assert np.array_equal(got["cond_values"], vals)
            assert np.array_equal(np.asarray(ds[i]["cond_values"], np.float32), vals)
        else:
            n_none += 1
            assert got["cond_values"] is None and ds[i]["cond_values"] is None and r["cond"] is None
    assert n_none == 1
    # the quirk the docs warn about: without a dtype, datasets hands back int64
    assert ds.with_format("numpy")[0]["codes"].dtype == np.int64
    assert hfdata.verify_dataset(out) == []


def test_embed_writes_flat_buffers_that_equal_the_arrow_columns(token_copy) -> None:
    from workflow.hfdata.flat import CODES_FILE, FLAT_DIR, INDEX_FILE, open_flat

    tokens = token_copy["tokens"]
    add_sidecars(tokens, skip=1)
    out = token_copy["root"] / "ds"
    build(tokens, out, embed=True, split_ratios=RATIOS)
    dd = datasets.load_from_disk(str(out))  # the flat buffers are an addition the loader ignores
    checked = 0
    for split, ds in dd.items():
        flat = open_flat(out / split)
        assert flat is not None and flat.rows == len(ds)
        arrow = ds.with_format("arrow")
        for i in range(len(ds)):
            want = hfdata.arrow_row_to_numpy(arrow[i])
            assert flat.codes(i).dtype == np.int16 and np.array_equal(flat.codes(i), want["codes"])
            if want["cond_values"] is None:
                assert flat.cond(i) is None
            else:
                assert flat.cond(i).dtype == np.float32 and np.array_equal(flat.cond(i), want["cond_values"])
            checked += 1
    assert checked == len(token_files(tokens))
    assert hfdata.verify_dataset(out) == []
    # one changed code, then a truncated buffer: verify names the split's flat buffers
    split = next(s for s in dd if len(dd[s]))
    codes_path = out / split / FLAT_DIR / CODES_FILE
    raw = bytearray(codes_path.read_bytes())
    raw[0] ^= 1
    codes_path.write_bytes(bytes(raw))
    problems = hfdata.verify_dataset(out)
    assert len(problems) == 1 and "flat token buffers" in problems[0] and "codes" in problems[0]
    codes_path.write_bytes(bytes(raw[:-2]))
    with pytest.raises(DatasetError, match="damaged"):
        open_flat(out / split)
    assert any("damaged" in p for p in hfdata.verify_dataset(out))
    # a plain build writes none
    build(tokens, token_copy["root"] / "plain")
    assert not (token_copy["root"] / "plain" / "train" / FLAT_DIR / INDEX_FILE).exists()


def _long_token_files(root: Path, n: int, frames: int = 3000) -> Path:
    """``n`` random 8-codebook token files of ``frames`` frames, each with a two-feature sidecar."""
    rng = np.random.default_rng(n)
    tokens = root / f"long{n}"
    info = sidecar.FeatureInfo(units="dB")
    for i in range(n):
        path = tokens / f"f{i:03d}.ecdc"
        path.parent.mkdir(parents=True, exist_ok=True)
        ecdc.write_ecdc(path, rng.integers(0, 1024, (8, frames), dtype=np.int16), model="encodec_24khz",
                        audio_length=frames * 320, bits=10,
                        extra={"sr": 24000, "fps": 75, "hop": 320, "bw": 6.0, "weights": "random"})
        sc = sidecar.merge_features(sidecar.empty_sidecar(frames, 75.0, path.name, dtype="float32"), {
            "a": (rng.normal(size=frames), info), "b": (rng.normal(size=frames), info)})
        sidecar.write_sidecar(sidecar.sidecar_path_for(path, tokens), sc)
    return tokens


def test_embed_build_memory_does_not_grow_with_the_number_of_files(tmp_path, monkeypatch) -> None:
    """Arrays are released batch by batch: the traced peak of a 50-file build is about that of a
    10-file one, while keeping the 40 extra files' arrays would add ~2.9 MB."""
    import tracemalloc

    from workflow.hfdata import builder

    monkeypatch.setattr(builder, "BATCH_ROWS", 4)
    small, large = _long_token_files(tmp_path, 10), _long_token_files(tmp_path, 50)
    per_file = 3000 * 8 * 2 + 3000 * 2 * 4
    build(small, tmp_path / "warm", embed=True, workers=1)  # imports and caches out of the way
    peaks = {}
    for name, tokens in (("small", small), ("large", large)):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            res = build(tokens, tmp_path / f"ds_{name}", embed=True, workers=1, materialize="none")
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert res.built == {"train": len(list(tokens.glob("*.ecdc")))}
    assert peaks["large"] - peaks["small"] < 0.25 * 40 * per_file, peaks


# -- splits ---------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=20), seed=st.integers(0, 2**31))
def test_assign_split_depends_only_on_id_seed_and_ratios(ids, seed) -> None:
    first = [hfdata.assign_split(i, RATIOS, seed) for i in ids]
    again = [hfdata.assign_split(i, RATIOS, seed) for i in reversed(ids)][::-1]
    assert first == again and set(first) <= set(RATIOS)
    assert hfdata.assign_split(ids[0], {"train": 1.0, "none": 0.0}, seed) == "train"


def test_assign_split_follows_the_ratios() -> None:
    ratios = hfdata.parse_split_ratios("train=0.9,valid=0.05,test=0.05")
    counts = Counter(hfdata.assign_split(f"file_{i:05d}", ratios, 3) for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.9) < 0.01 and abs(counts["test"] / 20000 - 0.05) < 0.01
    other_seed = [hfdata.assign_split(f"file_{i:05d}", ratios, 4) for i in range(200)]
    assert other_seed != [hfdata.assign_split(f"file_{i:05d}", ratios, 3) for i in range(200)]
    assert hfdata.parse_split_ratios("a=2,b=2") == {"a": 0.5, "b": 0.5}
    for bad in ("train", "train=x", "train=0", "a=1,a=1", "bad name=1", "train=-1,valid=2"):
        with pytest.raises(UsageError):
            hfdata.parse_split_ratios(bad)


def test_split_ratios_are_stable_when_files_are_added(token_copy) -> None:
    tokens = token_copy["tokens"]
    out = token_copy["root"] / "ds"

    def assignment(dd) -> dict[str, str]:
        return {i: split for split, ds in dd.items() for i in ds["id"]}

    first = assignment(build(tokens, out, split_ratios=RATIOS, seed=7).dataset)
    assert len(first) == 7
    again = assignment(build(tokens, token_copy["root"] / "ds_again", split_ratios=RATIOS, seed=7).dataset)
    assert again == first
    for p in token_files(tokens)[:4]:  # more files arrive
        shutil.copy(p, p.with_name("extra_" + p.name))
    grown = assignment(build(tokens, out, split_ratios=RATIOS, seed=7).dataset)
    assert len(grown) == 11 and {i: grown[i] for i in first} == first
    dd = build(tokens, out, split_ratios={"train": 1.0, "holdout": 0.0}, fresh=True).dataset
    assert dd["train"].num_rows == 11 and dd["holdout"].num_rows == 0  # an empty split still loads
    assert list(hfdata.load_dataset_dir(out)) == ["train", "holdout"]


def test_adding_a_split_keeps_the_others_and_rebuilding_replaces_only_itself(token_copy) -> None:
    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    valid_src = token_copy["root"] / "valid_tokens"  # same relative paths as some train files
    for p in token_files(tokens)[-3:]:
        (valid_src / relative_key(p, tokens)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, valid_src / relative_key(p, tokens))
    out = token_copy["root"] / "ds"
    build(tokens, out, split="train")
    train_before = rows(hfdata.load_dataset_dir(out)["train"])

    res = build(valid_src, out, split="valid", tokens_subdir="tokens_valid")
    assert res.kept == ["train"] and res.built == {"valid": 3}
    dd = hfdata.load_dataset_dir(out)
    assert list(dd) == ["train", "valid"] and rows(dd["train"]) == train_before
    assert all(r["audio"].startswith("tokens_valid/") for r in rows(dd["valid"]))
    assert hfdata.verify_dataset(out) == []
    meta = hfdata.read_dataset_meta(out)
    assert meta["splits"]["train"]["rows"] == 7 and meta["splits"]["valid"]["rows"] == 3
    assert meta["features_consistent"] is False  # valid has no sidecars: flagged, not silent

    res = build(tokens, out, split="train", max_files=2)  # rebuild train only
    dd = hfdata.load_dataset_dir(out)
    assert dd["train"].num_rows == 2 and dd["valid"].num_rows == 3 and res.kept == ["valid"]
    assert len(list((out / "tokens").rglob("*.ecdc"))) == 2  # old train files are gone
    assert hfdata.verify_dataset(out) == []

    build(tokens, out, split="train")
    with pytest.raises(DatasetError, match="tokens-subdir"):  # two sources, one path: refused
        build(valid_src, out, split="test")
    with pytest.raises(DatasetError, match="--embed"):  # column sets must agree
        build(valid_src, out, split="test", tokens_subdir="t2", embed=True)
    assert list(hfdata.load_dataset_dir(out)) == ["train", "valid"]
    assert list(build(valid_src, out, split="test", fresh=True).dataset) == ["test"]


# -- problems, verify, atomicity ------------------------------------------------------------------
def test_corrupt_files_and_sidecar_mismatch_are_reported_not_lost(token_copy) -> None:
    tokens = token_copy["tokens"]
    npys = add_sidecars(tokens)
    files = token_files(tokens)
    files[0].write_bytes(files[0].read_bytes()[:-7])  # truncated payload
    files[1].write_bytes(b"not a token file at all")
    h = ecdc.read_ecdc_header(files[2])
    bad = sidecar.merge_features(sidecar.empty_sidecar(h.num_frames - 3, h.fps, "x"), {
        "pitch": (np.zeros(h.num_frames - 3), sidecar.FeatureInfo()),
        "loudness": (np.zeros(h.num_frames - 3), sidecar.FeatureInfo())})
    sidecar.write_sidecar(npys[relative_key(files[2], tokens)], bad)
    rewrite_with_frames(files[3], ecdc.read_ecdc_header(files[3]).num_frames, keep_codebooks=4)

    out = token_copy["root"] / "ds"
    res = build(tokens, out, embed=True)
    bad_keys = [relative_key(p, tokens) for p in files[:4]]
    assert sorted(k for k, _ in res.problems) == sorted(bad_keys)
    why = dict(res.problems)
    assert "truncated" in why[bad_keys[0]] and "frames" in why[bad_keys[2]]
    assert "4 codebooks" in why[bad_keys[3]]
    assert res.built == {"train": 3}
    skipped = hfdata.read_dataset_meta(out)["splits"]["train"]["skipped"]
    assert sorted(s["key"] for s in skipped) == sorted(bad_keys)
    report = json.loads(res.report_path.read_text())
    assert report["counts"]["failed"] == 4 and report["counts"]["ok"] == 3
    assert "skipped" in (out / "README.md").read_text()


def test_verify_catches_a_deleted_file_and_frame_mismatches(token_copy) -> None:
    tokens = token_copy["tokens"]
    npys = add_sidecars(tokens)
    out = token_copy["root"] / "ds"
    build(tokens, out, verify=True)
    files = token_files(tokens)
    files[0].unlink()
    rewrite_with_frames(files[1], 30)
    h = ecdc.read_ecdc_header(files[2])
    npy = npys[relative_key(files[2], tokens)]
    sidecar.write_sidecar(npy, sidecar.empty_sidecar(h.num_frames + 5, h.fps, "x"))
    problems = hfdata.verify_dataset(out)
    assert len(problems) == 3
    text = "\n".join(problems)
    assert "broken link" in text and relative_key(files[0], tokens)[:-5] in text
    assert "frame mismatch" in text and "30 frames" in text
    assert "sidecar frame mismatch" in text


def test_a_failed_build_leaves_the_old_dataset_untouched(token_copy) -> None:
    tokens = token_copy["tokens"]
    out = token_copy["root"] / "ds"
    build(tokens, out, split="train")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    token_files(tokens)[0].unlink()  # breaks a row of the kept split
    with pytest.raises(hfdata.VerifyError) as err:
        build(tokens, out, split="valid", verify=True)
    assert "broken link" in str(err.value) and len(err.value.problems) == 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert list(hfdata.load_dataset_dir(out)) == ["train"]
    assert [p.name for p in out.parent.iterdir() if ".tmp-" in p.name] == []


def test_an_interrupted_swap_is_recovered(token_copy) -> None:
    tokens = token_copy["tokens"]
    out = token_copy["root"] / "ds"
    build(tokens, out, split="train", max_files=3)
    # what a kill between the two renames of the swap leaves: the old folder under a temp name
    os.rename(out, out.parent / ".ds.tmp-old-999999999-abc")
    (out.parent / ".ds.tmp-build-999999999-def").mkdir()
    res = build(tokens, out, split="valid", max_files=2)
    assert res.kept == ["train"] and hfdata.load_dataset_dir(out)["train"].num_rows == 3
    assert [p.name for p in out.parent.iterdir() if ".tmp-" in p.name] == []


def test_max_files_and_refusals(token_copy) -> None:
    tokens = token_copy["tokens"]
    out = token_copy["root"] / "ds"
    res = build(tokens, out, max_files=3)
    assert res.dataset["train"]["id"] == [relative_key(p, tokens)[:-5] for p in token_files(tokens)[:3]]
    with pytest.raises(UsageError, match="inside"):
        build(tokens, tokens / "ds")
    with pytest.raises(UsageError, match="inside OUT_DIR"):
        build(out / "tokens", out)
    foreign = token_copy["root"] / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a dataset"):
        build(tokens, foreign)
    with pytest.raises(DatasetError, match="not a dataset"):
        hfdata.load_dataset_dir(foreign)
    with pytest.raises(UsageError, match="no \\*.ecdc"):
        build(token_copy["norm"], token_copy["root"] / "ds3")
    with pytest.raises(UsageError):
        build(tokens, token_copy["root"] / "ds4", split="bad/name")
    assert (foreign / "keep.txt").read_text() == "mine"


def test_build_dataset_returns_a_datasetdict(token_copy) -> None:
    dd = hfdata.build_dataset(token_copy["tokens"], token_copy["root"] / "ds", split="valid", max_files=2)
    assert isinstance(dd, datasets.DatasetDict) and dd["valid"].num_rows == 2


# -- issue 13: the card, moving, links -----------------------------------------------------------
def test_card_yaml_license_pretty_name_and_no_local_paths(token_copy) -> None:
    """Item 18: the Hub's YAML fields, flags kept across rebuilds, no absolute local path in the
    card or META_FILE (even in a skipped file's error), a snippet that needs only datasets+numpy,
    and a wav column that casts to datasets.Audio(decode=False)."""
    import yaml

    tokens = token_copy["tokens"]
    add_sidecars(tokens)
    files = token_files(tokens)
    files[0].write_bytes(b"not a token file at all")  # its error names its path
    out = token_copy["root"] / "ds"
    build(tokens.absolute(), out.absolute(), wav_root=token_copy["norm"].absolute(), embed=True,
          license="cc-by-4.0", pretty_name="Demo tones")
    card = (out / hfdata.CARD_FILE).read_text()
    head = yaml.safe_load(card.split("---")[1])
    assert head["license"] == "cc-by-4.0" and head["pretty_name"] == "Demo tones"
    assert head["task_categories"] == ["audio-to-audio"] and head["size_categories"] == ["n<1K"]
    assert head["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": "train/data-*.arrow"}]}]
    assert list((out / "train").glob("data-*.arrow"))
    root = str(token_copy["root"].resolve())
    meta_text = (out / hfdata.META_FILE).read_text()
    assert "skipped" in card and root not in card and root not in meta_text
    assert hfdata.read_dataset_meta(out)["splits"]["train"]["source"]["tokens_dir"] == "../tokens"

    build(tokens, out, wav_root=token_copy["norm"], embed=True)  # rebuild keeps the card settings
    head = yaml.safe_load((out / hfdata.CARD_FILE).read_text().split("---")[1])
    assert (head["license"], head["pretty_name"]) == ("cc-by-4.0", "Demo tones")
    build(tokens, token_copy["root"] / "plain")
    head = yaml.safe_load((token_copy["root"] / "plain" / hfdata.CARD_FILE).read_text().split("---")[1])
    assert head["license"] == "other" and head["pretty_name"].startswith("plain: encodec_24khz tokens")

    card = (out / hfdata.CARD_FILE).read_text()
    snippet = card.split("With `datasets` and numpy only:")[1].split("```python\n")[1].split("```")[0]
    assert "workflow" not in snippet
    scope: dict = {}
    cwd = os.getcwd()
    os.chdir(out.parent)
    try:
        exec(compile(snippet, "card-snippet", "exec"), scope)  # noqa: S102 - our own card's code
    finally:
        os.chdir(cwd)
    assert scope["cond"].shape == (scope["row"]["num_frames"], 2)
    assert scope["codes"].shape == (8, scope["row"]["num_frames"]) and scope["codes"].dtype == np.int16
    wav = scope["wavs"][0]["wav"]
    assert wav == {"bytes": None, "path": scope["row"]["wav"]} and (out / wav["path"]).is_file()


def test_card_says_what_can_be_copied(token_copy) -> None:
    """Item 6: link datasets say `cp -r` alone breaks them and how to copy; copy datasets don't."""
    tokens = token_copy["tokens"]
    build(tokens, token_copy["root"] / "linked")
    card = (token_copy["root"] / "linked" / hfdata.CARD_FILE).read_text()
    assert "relative symbolic links" in card and "`../tokens`" in card
    assert "`cp -r` of this folder alone" in card and "cp -rL" in card and "--materialize copy" in card
    build(tokens, token_copy["root"] / "copied", materialize="copy")
    card = (token_copy["root"] / "copied" / hfdata.CARD_FILE).read_text()
    assert "Self-contained" in card and "cp -rL" not in card


def test_links_are_relative_to_the_real_folders(token_copy) -> None:
    """Item 6: an OUT_DIR reached through a symlinked folder still gets links that resolve (the
    ``..`` count is taken from where the link really lives), and the tree moves as a whole."""
    root, tokens = token_copy["root"], token_copy["tokens"]
    add_sidecars(tokens)
    (root / "deep" / "er").mkdir(parents=True)
    (root / "alias").symlink_to(root / "deep" / "er")
    build(tokens, root / "alias" / "ds")
    assert hfdata.verify_dataset(root / "deep" / "er" / "ds") == []
    link = root / "deep" / "er" / "ds" / rows(hfdata.load_dataset_dir(root / "alias" / "ds")["train"])[0]["audio"]
    assert not os.path.isabs(os.readlink(link)) and link.resolve().is_file()


def test_token_header_read_in_one_go_and_past_the_first_block(tmp_path: Path) -> None:
    """read_token_header reads a typical header with one read; a header longer than that read
    (big extra keys) and broken files fall back to the path reader, whose errors name the file."""
    from workflow.errors import EcdcFormatError
    from workflow.hfdata.read import HEAD_BYTES, read_token_header

    codes = np.random.default_rng(0).integers(0, 1024, (8, 75))
    for name, extra in (("short", {}), ("long", {"notes": "x" * (2 * HEAD_BYTES)})):
        path = tmp_path / f"{name}.ecdc"
        ecdc.write_ecdc(path, codes, model="encodec_24khz", audio_length=75 * 320, bits=10, extra=extra)
        got = read_token_header(path)
        assert got == ecdc.read_ecdc_header(path) and got.num_frames == 75
        assert (got.data_offset > HEAD_BYTES) == (name == "long")
    data = (tmp_path / "long.ecdc").read_bytes()
    (tmp_path / "cut.ecdc").write_bytes(data[:HEAD_BYTES + 10])  # inside the long JSON header
    with pytest.raises(EcdcFormatError, match=r"cut\.ecdc.*truncated"):
        read_token_header(tmp_path / "cut.ecdc")
    (tmp_path / "tail.ecdc").write_bytes((tmp_path / "short.ecdc").read_bytes() + b"\0")
    with pytest.raises(EcdcFormatError, match=r"tail\.ecdc.*trailing data"):
        read_token_header(tmp_path / "tail.ecdc")


def test_resolve_str_agrees_with_resolve_path(tmp_path: Path) -> None:
    abs_dir = str(tmp_path / "ds")
    for rel in ("tokens/a/b.ecdc", "../tok/a.ecdc", "./tokens/x.ecdc", "tokens//x.ecdc", "a/./b", "/abs/x"):
        got = hfdata.read.resolve_str(abs_dir, rel)
        # the same file, and ``..`` always collapsed lexically (never left to the kernel)
        assert os.path.normpath(got) == str(hfdata.resolve_path(abs_dir, rel)) and ".." not in got.split("/")
