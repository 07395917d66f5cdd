"""The `.ecdc` container: byte-compatibility with Meta's `encodec`, round-trips, hostile input.

Meta's `encodec` package imports torchaudio at import time but its binary code never uses it;
torchaudio must not be installed here, so an empty stand-in module is registered just for the
import and removed again (transformers probes for torchaudio and must not find a fake one).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import struct
import sys
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflow import ecdc
from workflow.errors import EcdcFormatError

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

FAST = 0.5  # seconds: hostile input must be refused well within this


@pytest.fixture(scope="module")
def meta():
    """Meta's `encodec` package (``binary`` and ``compress`` modules), imported without torchaudio."""
    with pytest.MonkeyPatch.context() as mp:
        if "torchaudio" not in sys.modules:
            mp.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
        binary = importlib.import_module("encodec.binary")
        compress = importlib.import_module("encodec.compress")  # `encodec.compress` is also a function
        model = importlib.import_module("encodec.model")
    return types.SimpleNamespace(binary=binary, compress=compress, model=model)


def meta_write(binary, fo, model: str, al: int, segments, scales, bits: int = 10) -> None:
    """Write a file the way Meta's `compress_to_file(use_lm=False)` does, with Meta's own code."""
    binary.write_ecdc_header(fo, {"m": model, "al": al, "nc": int(segments[0].shape[0]), "lm": False})
    for i, seg in enumerate(segments):
        if scales is not None:
            fo.write(struct.pack("!f", scales[i]))
        packer = binary.BitPacker(bits, fo)
        for t in range(seg.shape[1]):
            for value in seg[:, t].tolist():
                packer.push(value)
        packer.flush()


def meta_read(binary, fo, frames_per_segment, scaled: bool, bits: int = 10):
    """Read with Meta's `read_ecdc_header` + `BitUnpacker` (as `decompress_from_file` does)."""
    header = binary.read_ecdc_header(fo)
    segments, scales = [], []
    for n_frames in frames_per_segment:
        if scaled:
            scales.append(struct.unpack("!f", fo.read(4))[0])
        unpacker = binary.BitUnpacker(bits, fo)
        seg = np.zeros((header["nc"], n_frames), dtype=np.int64)
        for t in range(n_frames):
            for k in range(header["nc"]):
                value = unpacker.pull()
                assert value is not None, "stream ended early"
                seg[k, t] = value
        segments.append(seg)
    assert fo.read() == b"", "trailing bytes"
    return header, segments, scales


def layout_frames(model: str, al: int, nc: int = 1, **extra) -> list[int]:
    meta = {"m": model, "al": al, "nc": nc, "lm": False, **extra}
    header = ecdc.EcdcHeader(model, al, nc, False, meta, 0)
    return [f for _, _, f in header.segment_layout()]


def random_segments(rng, k: int, frames: list[int], bins: int = 1024) -> list[np.ndarray]:
    return [rng.integers(0, bins, (k, f)) for f in frames]


def header_bytes(meta: dict | list | str, payload: bytes = b"", version: int = 0) -> bytes:
    raw = meta.encode() if isinstance(meta, str) else json.dumps(meta).encode()
    return b"ECDC" + bytes([version]) + struct.pack("!I", len(raw)) + raw + payload


def assert_refused(data: bytes, tmp_path: Path, match: str | None = None) -> EcdcFormatError:
    """``data`` as a file must be refused with EcdcFormatError, quickly, naming the file."""
    path = tmp_path / "bad.ecdc"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(EcdcFormatError, match=match) as info:
        ecdc.read_ecdc(path)
    assert time.perf_counter() - start < FAST
    assert str(path) in str(info.value)
    with pytest.raises(EcdcFormatError):
        ecdc.read_ecdc(data)
    return info.value


# ----------------------------------------------------------------------------------- basics


def test_bits_for():
    assert [ecdc.bits_for(b) for b in (1, 2, 3, 4, 5, 1023, 1024, 1025, 4096, 32768)] == [
        1, 1, 2, 2, 3, 10, 10, 11, 12, 15]
    for bad in (0, -3, 32769):
        with pytest.raises(ValueError):
            ecdc.bits_for(bad)


def test_meta_layout_table_matches_encodec(meta):
    for name, build in (("encodec_24khz", meta.model.EncodecModel.encodec_model_24khz),
                        ("encodec_48khz", meta.model.EncodecModel.encodec_model_48khz)):
        model = build(pretrained=False)
        table = ecdc.META_MODELS[name]
        assert (table.sample_rate, table.fps, table.bits) == (model.sample_rate, model.frame_rate,
                                                             model.bits_per_codebook)
        assert table.hop == int(np.prod(model.encoder.ratios))
        assert (table.segment, table.stride, table.scaled) == (model.segment_length, model.segment_stride,
                                                               model.normalize)


# ------------------------------------------------------------------------ Meta compatibility


@pytest.mark.parametrize("al", [1, 320, 6720, 24000 * 3 + 17])  # 6720: Meta's float frame rule is off by one
def test_24k_bytes_identical_to_meta(meta, al):
    rng = np.random.default_rng(al)
    frames = layout_frames("encodec_24khz", al)
    assert frames == [math.ceil(al / 320)]
    segments = random_segments(rng, 8, frames)
    fo = io.BytesIO()
    meta_write(meta.binary, fo, "encodec_24khz", al, segments, None)
    assert ecdc.encode_ecdc(segments, model="encodec_24khz", audio_length=al, bits=10) == fo.getvalue()


@pytest.mark.parametrize("al", [1000, 48000, 48001, 47520 * 3 + 480, 48000 * 3 + 5000])
def test_48k_multisegment_bytes_identical_to_meta(meta, al):
    rng = np.random.default_rng(al)
    frames = layout_frames("encodec_48khz", al)
    assert len(frames) == math.ceil(al / 47520)
    segments = random_segments(rng, 4, frames)
    scales = [float(x) for x in rng.uniform(1e-3, 2.0, len(frames))]
    fo = io.BytesIO()
    meta_write(meta.binary, fo, "encodec_48khz", al, segments, scales)
    ours = ecdc.encode_ecdc(segments, model="encodec_48khz", audio_length=al, bits=10, scales=scales)
    assert ours == fo.getvalue()


def test_meta_written_files_read_back(meta, tmp_path):
    rng = np.random.default_rng(1)
    for model, al, k in (("encodec_24khz", 24000 * 2 + 99, 32), ("encodec_48khz", 48000 * 2 + 777, 16)):
        frames = layout_frames(model, al)
        segments = random_segments(rng, k, frames)
        scales = [float(x) for x in rng.uniform(0.01, 1.0, len(frames))] if model == "encodec_48khz" else None
        path = tmp_path / f"{model}.ecdc"
        with open(path, "wb") as fo:
            meta_write(meta.binary, fo, model, al, segments, scales)
        tokens = ecdc.read_ecdc(path)
        assert tokens.header.model == model and tokens.header.audio_length == al
        assert tokens.header.num_codebooks == k and tokens.header.bits == 10
        assert tokens.num_frames == tokens.header.num_frames == sum(frames)
        for ours, theirs in zip(tokens.segments, segments, strict=True):
            assert ours.dtype == np.int16
            np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(tokens.codes, np.concatenate(segments, axis=1))
        if scales is None:
            assert tokens.scales == [None]
        else:
            np.testing.assert_array_equal(np.float32(tokens.scales), np.float32(scales))


def test_files_from_meta_compress_to_file_read_back(meta):
    """Meta's real pipeline (random-weight models, no download) → our reader → same codes."""
    torch.manual_seed(0)
    for build, name, channels, al in (
        (meta.model.EncodecModel.encodec_model_24khz, "encodec_24khz", 1, 6721),
        (meta.model.EncodecModel.encodec_model_48khz, "encodec_48khz", 2, 48000 + 9000),
    ):
        model = build(pretrained=False)
        model.name = name  # compress_to_file only accepts Meta's model names
        model.set_target_bandwidth(6.0)
        wav = torch.randn(channels, al) * 0.1
        fo = io.BytesIO()
        meta.compress.compress_to_file(model, wav, fo, use_lm=False)
        with torch.no_grad():
            frames = model.encode(wav[None])
        tokens = ecdc.read_ecdc(fo.getvalue())
        assert len(tokens.segments) == len(frames)
        for ours, (codes, scale) in zip(tokens.segments, frames, strict=True):
            np.testing.assert_array_equal(ours, codes[0].numpy())
        for ours, (_, scale) in zip(tokens.scales, frames, strict=True):
            assert (ours is None) == (scale is None)
            if scale is not None:
                assert np.float32(ours) == np.float32(scale.item())


def test_our_files_read_by_meta(meta, tmp_path):
    rng = np.random.default_rng(2)
    cases = (
        ("encodec_24khz", 24000 * 2 + 5, {"bits": 10, "sr": 24000, "fps": 75, "hop": 320, "bw": 6.0,
                                          "weights": "facebook/encodec_24khz"}),
        ("encodec_48khz", 48000 * 3 + 123, {"bits": 10, "sr": 48000, "fps": 150, "hop": 320, "bw": 12.0,
                                            "weights": "random", "seg": 48000, "stride": 47520,
                                            "scaled": True}),
    )
    for model, al, extra in cases:
        header = ecdc.EcdcHeader(model, al, 8, False, {"m": model, "al": al, "nc": 8, "lm": False}, 0)
        frames = [f for _, _, f in header.segment_layout()]
        segments = random_segments(rng, 8, frames)
        scales = [float(x) for x in rng.uniform(0.1, 1.0, len(frames))] if header.scaled else None
        path = tmp_path / f"{model}.ecdc"
        ecdc.write_ecdc(path, segments, model=model, audio_length=al, bits=10, scales=scales, extra=extra)
        with open(path, "rb") as fo:
            got, theirs, their_scales = meta_read(meta.binary, fo, frames, header.scaled)
        assert got == {"m": model, "al": al, "nc": 8, "lm": False, **extra}
        for a, b in zip(theirs, segments, strict=True):
            np.testing.assert_array_equal(a, b)
        if scales is not None:
            np.testing.assert_array_equal(np.float32(their_scales), np.float32(scales))
        back = ecdc.read_ecdc_header(path)
        assert back.meta["weights"] == extra["weights"] and back.bandwidth == extra["bw"]
        assert back.fps == extra["fps"] and back.sample_rate == extra["sr"] and back.hop == 320


# ---------------------------------------------------------------------------- round trips

layouts = st.one_of(
    st.builds(lambda hop: {"hop": hop}, st.sampled_from([1, 7, 320, 512])),
    st.builds(lambda hop, seg, ov, scaled: {"hop": hop, "seg": seg, "stride": max(1, seg - ov),
                                            "scaled": scaled},
              st.sampled_from([1, 5, 320]), st.integers(1, 2000), st.integers(0, 300), st.booleans()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.integers(1, 15), k=st.integers(1, 9), al=st.integers(0, 5000), layout=layouts,
       seed=st.integers(0, 2**32 - 1))
def test_roundtrip_any_width(bits, k, al, layout, seed):
    """Every bit width, codebook count and layout round-trips exactly; size is as computed.

    T=0 is covered by ``al == 0``: the file is header-only and reads back as ``[K, 0]`` codes
    (Meta's own reader cannot decode such a file, but nothing in our pipeline writes one).
    """
    if "seg" in layout:
        layout["stride"] = min(layout["stride"], layout["seg"])
    rng = np.random.default_rng(seed)
    extra = {"sr": 16000, **layout}
    frames = layout_frames("test_codec", al, k, bits=bits, **extra)
    segments = random_segments(rng, k, frames, 1 << bits) or [np.zeros((k, 0), np.int64)]
    scales = [float(x) for x in rng.normal(size=len(frames))] if layout.get("scaled") else None
    data = ecdc.encode_ecdc(segments, model="test_codec", audio_length=al, bits=bits, scales=scales,
                            extra=extra)
    tokens = ecdc.read_ecdc(data)
    header = tokens.header
    assert (header.bits, header.num_codebooks, header.audio_length) == (bits, k, al)
    assert header.num_frames == tokens.num_frames == sum(frames)
    assert tokens.codes.shape == (k, sum(frames)) and tokens.codes.dtype == np.int16
    if frames:
        for ours, theirs in zip(tokens.segments, segments, strict=True):
            np.testing.assert_array_equal(ours, theirs)
    if scales is not None:
        np.testing.assert_array_equal(np.float32(tokens.scales), np.float32(scales))
    payload = sum(math.ceil(f * k * bits / 8) + 4 * bool(layout.get("scaled")) for f in frames)
    assert len(data) == header.data_offset + payload


@pytest.mark.parametrize("bits,k", [(15, 32), (15, 3), (11, 9), (13, 16), (10, 8), (1, 1), (7, 5)])
def test_unpacking_by_strided_reads_covers_every_period(bits, k, tmp_path):
    """Widths and codebook counts beyond the property test: 15-bit codes, k up to 32, and k × bits
    odd (the bit offset returns to a byte boundary only every 8 frames); from bytes and from a file."""
    codes = np.random.default_rng(bits * 100 + k).integers(0, 1 << bits, (k, 1003))
    data = ecdc.encode_ecdc([codes], model="test_codec", audio_length=1003, bits=bits,
                             extra={"sr": 16000, "hop": 1})
    (tmp_path / "x.ecdc").write_bytes(data)
    for source in (data, tmp_path / "x.ecdc"):
        np.testing.assert_array_equal(ecdc.read_ecdc(source).codes, codes.astype(np.uint16).view(np.int16))


def test_zero_length_audio_is_header_only(tmp_path):
    path = tmp_path / "empty.ecdc"
    ecdc.write_ecdc(path, [np.zeros((4, 0), np.int64)], model="encodec_24khz", audio_length=0, bits=10)
    tokens = ecdc.read_ecdc(path)
    assert tokens.codes.shape == (4, 0) and tokens.segments == [] and tokens.num_frames == 0
    assert path.stat().st_size == tokens.header.data_offset


def test_on_disk_size_is_10_bits_per_code(tmp_path):
    rng = np.random.default_rng(3)
    al, k = 24000 * 10, 8
    t = al // 320
    path = tmp_path / "size.ecdc"
    ecdc.write_ecdc(path, rng.integers(0, 1024, (k, t)), model="encodec_24khz", audio_length=al, bits=10,
                    extra={"bits": 10, "sr": 24000, "fps": 75, "hop": 320, "bw": 6.0, "weights": "random"})
    header = ecdc.read_ecdc_header(path)
    assert header.num_frames == t == 750
    assert path.stat().st_size == header.data_offset + math.ceil(t * k * 10 / 8)
    assert path.stat().st_size < 200 + t * k * 10 / 8
    assert not [p for p in tmp_path.iterdir() if p.name != "size.ecdc"]  # atomic write left no temp


def test_non_meta_codec_header_properties():
    rng = np.random.default_rng(4)
    al = 44100 * 2 + 3
    t = math.ceil(al / 512)
    extra = {"sr": 44100, "fps": 44100 / 512, "hop": 512, "bw": 8.0, "weights": "descript/dac_44khz"}
    data = ecdc.encode_ecdc(rng.integers(0, 1024, (9, t)), model="dac_44khz", audio_length=al, bits=10,
                            extra=extra)
    header = ecdc.read_ecdc(data).header
    assert header.meta["bits"] == 10  # added because a non-Meta model cannot be inferred
    assert header.fps == pytest.approx(86.1328125) and header.num_frames == t
    assert header.segment_layout() == [(0, al, t)] and not header.scaled
    assert header.duration == pytest.approx(al / 44100)


# ------------------------------------------------------------------------------ write errors


def test_write_refuses_bad_codes_and_layouts(tmp_path):
    rng = np.random.default_rng(5)
    good = rng.integers(0, 1024, (2, 10))
    kw = {"model": "encodec_24khz", "audio_length": 3200, "bits": 10}
    for bad, match in (
        (good + 1024, "outside"),
        (good - 1024, "outside"),
        (good[:, :9], "do not match"),
        (good.astype(np.float32), "non-integer"),
    ):
        with pytest.raises(EcdcFormatError, match=match):
            ecdc.write_ecdc(tmp_path / "x.ecdc", bad, **kw)
    assert not list(tmp_path.iterdir())
    with pytest.raises(EcdcFormatError, match="outside"):  # 10-bit codes do not fit 9 bits
        ecdc.encode_ecdc(good | 512, model="x", audio_length=10, bits=9, extra={"sr": 1000, "hop": 1})
    with pytest.raises(EcdcFormatError, match="disagrees"):
        ecdc.encode_ecdc(good, **kw, extra={"bits": 9})
    with pytest.raises(EcdcFormatError, match="fixed"):
        ecdc.encode_ecdc(good, **{**kw, "bits": 11})
    with pytest.raises(EcdcFormatError, match="fixed"):
        ecdc.encode_ecdc(good, **kw, extra={"hop": 300})
    with pytest.raises(EcdcFormatError, match="lacks the key 'hop'"):
        ecdc.encode_ecdc(good, model="dac_16khz", audio_length=3200, bits=10, extra={"sr": 16000})
    with pytest.raises(EcdcFormatError, match="reserved"):
        ecdc.encode_ecdc(good, **kw, extra={"al": 5})
    frames = layout_frames("encodec_48khz", 50000)
    segs = random_segments(rng, 2, frames)
    with pytest.raises(EcdcFormatError, match="scale"):
        ecdc.encode_ecdc(segs, model="encodec_48khz", audio_length=50000, bits=10)
    with pytest.raises(EcdcFormatError, match="scales"):
        ecdc.encode_ecdc(segs, model="encodec_48khz", audio_length=50000, bits=10, scales=[1.0, float("nan")])
    with pytest.raises(EcdcFormatError, match="no per-segment scale"):
        ecdc.encode_ecdc(good, **kw, scales=[1.0])


# ------------------------------------------------------------------------------ hostile input


def _valid_file(scaled: bool = False) -> bytes:
    rng = np.random.default_rng(6)
    if scaled:
        frames = layout_frames("encodec_48khz", 60000)
        return ecdc.encode_ecdc(random_segments(rng, 4, frames), model="encodec_48khz", audio_length=60000,
                                bits=10, scales=[0.5] * len(frames))
    return ecdc.encode_ecdc(rng.integers(0, 1024, (4, 30)), model="encodec_24khz", audio_length=9600, bits=10)


BASE = {"m": "encodec_24khz", "al": 9600, "nc": 4, "lm": False}
CUSTOM = {**BASE, "m": "c", "bits": 8, "sr": 8, "hop": 1}
HOSTILE = {
    "empty file": (b"", "too short"),
    "wrong magic": (b"RIFF" + _valid_file()[4:], "not an .ecdc file"),
    "version 1": (b"ECDC\x01" + _valid_file()[5:], "version 1"),
    "truncated prefix": (b"ECDC\x00\x00", "too short"),
    "header longer than file": (b"ECDC\x00" + struct.pack("!I", 500) + b"{}", "truncated"),
    "header over 1 MiB": (b"ECDC\x00" + struct.pack("!I", 2**32 - 1) + b"{}", "limit"),
    "bad json": (header_bytes('{"m": "encodec_24khz", "al": '), "not valid"),
    "not utf-8": (header_bytes("x") [:-1] + b"\xff", "not valid"),
    "deeply nested json": (header_bytes("[" * 200_000 + "]" * 200_000), "not valid|not an object"),
    "json array": (header_bytes([1, 2]), "not an object"),
    "json string": (header_bytes('"ECDC"'), "not an object"),
    "missing nc": (header_bytes({"m": "encodec_24khz", "al": 1, "lm": False}), "'nc'"),
    "missing lm": (header_bytes({"m": "encodec_24khz", "al": 1, "nc": 1}), "'lm'"),
    "model not a string": (header_bytes({**BASE, "m": 3}), "'m'"),
    "negative al": (header_bytes({**BASE, "al": -1}), "'al'"),
    "float al": (header_bytes({**BASE, "al": 9600.0}), "'al'"),
    "bool nc": (header_bytes({**BASE, "nc": True}), "'nc'"),
    "huge al": (header_bytes({**BASE, "al": 2**62}), "'al'"),
    "astronomic al": (header_bytes('{"m": "x", "al": ' + "9" * 5000 + "}"), "not valid"),
    "zero nc": (header_bytes({**BASE, "nc": 0}), "'nc'"),
    "huge nc": (header_bytes({**BASE, "nc": 10**9}), "'nc'"),
    "lm is a string": (header_bytes({**BASE, "lm": "no"}), "'lm'"),
    "bits 16": (header_bytes({**BASE, "bits": 16}), "'bits'"),
    "bits 0": (header_bytes({**BASE, "bits": 0}), "'bits'"),
    "unknown model, no hop": (header_bytes({**BASE, "m": "mystery", "bits": 10, "sr": 16000}), "'hop'"),
    "fps nan": (header_bytes('{"m": "encodec_24khz", "al": 1, "nc": 1, "lm": false, "fps": NaN}'), "'fps'"),
    "stride above seg": (header_bytes({**CUSTOM, "seg": 10, "stride": 11}), "'stride'"),
    "absurd overlap": (header_bytes({**CUSTOM, "seg": 10**6, "stride": 1}), "overlap"),
    "scaled not bool": (header_bytes({**BASE, "scaled": 1}), "'scaled'"),
    "payload missing": (header_bytes(BASE), "truncated"),
    "payload short": (_valid_file()[:-1], "truncated"),
    "payload long": (_valid_file() + b"\x00", "trailing"),
    "48k payload short": (_valid_file(scaled=True)[:-3], "truncated"),
    "lm true": (header_bytes({**BASE, "lm": True}, b"\x01" * 100), "use_lm=False"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_refused(case, tmp_path):
    data, match = HOSTILE[case]
    assert_refused(data, tmp_path, match)


def test_lying_header_does_not_allocate(tmp_path):
    """Headers claiming terabytes of codes are refused from the size check, before any allocation."""
    for meta in ({"m": "encodec_24khz", "al": 2**40, "nc": 4096, "lm": False},
                 {"m": "encodec_48khz", "al": 2**40, "nc": 4096, "lm": False},
                 {"m": "c", "al": 2**40, "nc": 4096, "lm": False, "bits": 15, "sr": 1, "hop": 1,
                  "seg": 1024, "stride": 1}):
        path = tmp_path / "liar.ecdc"
        path.write_bytes(header_bytes(meta, b"\x00" * 64))
        tracemalloc.start()
        try:
            start = time.perf_counter()
            header = ecdc.read_ecdc_header(path)  # header-only read still works and is cheap
            assert header.num_frames >= 2**40 // 320 and header.payload_bytes > 2**40
            with pytest.raises(EcdcFormatError, match="truncated"):
                ecdc.read_ecdc(path)
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert elapsed < FAST
        assert peak < 1 << 20, f"peak {peak} bytes"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), scaled=st.booleans())
def test_fuzzed_bytes_raise_only_ecdc_format_error(data, scaled):
    raw = bytearray(_valid_file(scaled))
    action = data.draw(st.sampled_from(["truncate", "flip", "splice", "append", "garbage_header"]))
    if action == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif action == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "splice":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    elif action == "append":
        raw += data.draw(st.binary(min_size=1, max_size=16))
    else:
        end = data.draw(st.integers(0, 60))
        raw[9 : 9 + end] = data.draw(st.binary(min_size=end, max_size=end))
    start = time.perf_counter()
    try:
        tokens = ecdc.read_ecdc(bytes(raw))
    except EcdcFormatError:
        pass
    else:  # only in-place bit flips can still be valid: same size, sane header
        assert action in ("flip", "garbage_header")
        assert tokens.codes.dtype == np.int16
    assert time.perf_counter() - start < FAST
    if action in ("truncate", "append"):  # the payload no longer matches the header: always refused
        with pytest.raises(EcdcFormatError):
            ecdc.read_ecdc(bytes(raw))


def test_header_only_read_survives_truncated_payload(tmp_path):
    rng = np.random.default_rng(7)
    al = 48000 * 5 + 1
    frames = layout_frames("encodec_48khz", al)
    path = tmp_path / "t.ecdc"
    ecdc.write_ecdc(path, random_segments(rng, 16, frames), model="encodec_48khz", audio_length=al, bits=10,
                    scales=[1.0] * len(frames))
    full = path.read_bytes()
    assert ecdc.validate_ecdc(path).num_frames == sum(frames)
    header = ecdc.read_ecdc_header(path)
    path.write_bytes(full[: header.data_offset + 10])
    header = ecdc.read_ecdc_header(path)
    assert (header.num_frames, header.num_codebooks, header.audio_length) == (sum(frames), 16, al)
    assert header.num_segments == len(frames) == 6 and header.scaled and header.fps == 150
    assert [f for _, _, f in header.segment_layout()] == frames
    with pytest.raises(EcdcFormatError, match="truncated"):
        ecdc.validate_ecdc(path)
    with pytest.raises(EcdcFormatError, match="truncated"):
        ecdc.load_tokens(path)


def test_lm_files_are_refused_but_header_readable_on_request(tmp_path):
    path = tmp_path / "lm.ecdc"
    path.write_bytes(header_bytes({**BASE, "lm": True}, b"\x17" * 40))
    with pytest.raises(EcdcFormatError, match="use_lm=False") as info:
        ecdc.read_ecdc_header(path)
    assert str(path) in str(info.value) and "s2" in str(info.value)
    assert ecdc.read_ecdc_header(path, allow_lm=True).use_lm


def test_missing_file_is_a_format_error(tmp_path):
    for fn in (ecdc.read_ecdc, ecdc.read_ecdc_header, ecdc.validate_ecdc, ecdc.load_tokens):
        with pytest.raises(EcdcFormatError, match="cannot read"):
            fn(tmp_path / "nope.ecdc")


# ------------------------------------------------------------------------------ legacy files


def test_legacy_torch_files(tmp_path):
    rng = np.random.default_rng(8)
    k, t = 8, 75
    codes = torch.from_numpy(rng.integers(0, 1024, (k, t)))
    cases = {
        "4d.pt": {"audio_codes": codes[None, None], "audio_scales": [None], "audio_length": 24000},
        "3d.pt": {"audio_codes": codes[None], "audio_scales": None, "audio_length": torch.tensor(24000)},
        "2d.pt": {"audio_codes": codes, "audio_length": 24000},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        for tokens in (ecdc.read_legacy_tokens(tmp_path / name), ecdc.load_tokens(tmp_path / name)):
            assert tokens.header.model == "encodec_24khz" and tokens.header.audio_length == 24000
            assert tokens.header.num_frames == tokens.num_frames == t and tokens.scales == [None]
            assert tokens.codes.dtype == np.int16
            np.testing.assert_array_equal(tokens.codes, codes.numpy())
    # the old non-zip torch serialisation starts with a raw pickle
    torch.save(cases["4d.pt"], tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(ecdc.load_tokens(tmp_path / "old.pt").codes, codes.numpy())


def test_legacy_48k_chunks(tmp_path):
    rng = np.random.default_rng(9)
    chunks = torch.from_numpy(rng.integers(0, 1024, (3, 1, 16, 150)))
    scales = [torch.tensor([[0.25 * (i + 1)]]) for i in range(3)]
    torch.save({"audio_codes": chunks, "audio_scales": scales, "audio_length": 120000}, tmp_path / "c.pt")
    tokens = ecdc.load_tokens(tmp_path / "c.pt")
    assert tokens.header.model == "encodec_48khz" and tokens.scales == [0.25, 0.5, 0.75]
    assert tokens.header.num_frames == tokens.num_frames == 450
    np.testing.assert_array_equal(tokens.codes, torch.cat(list(chunks[:, 0]), dim=1).numpy())


class _Custom:  # weights_only loading must refuse arbitrary classes
    pass


@pytest.mark.parametrize("obj", [
    [1, 2, 3],
    {"codes": torch.zeros(2, 3)},
    {"audio_codes": torch.zeros(2, 3)},
    {"audio_codes": torch.zeros(2, 2, 3, 4, dtype=torch.long)},
    {"audio_codes": torch.full((2, 3), 5000)},
    {"audio_codes": torch.zeros(2, 3, dtype=torch.long), "audio_length": "long"},
    {"audio_codes": torch.zeros(2, 1, 2, 3, dtype=torch.long), "audio_scales": [None]},
    {"audio_codes": torch.zeros(2, 3, dtype=torch.long), "extra": _Custom()},
])
def test_legacy_files_with_other_contents_are_refused(obj, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(EcdcFormatError) as info:
        ecdc.load_tokens(path)
    assert str(path) in str(info.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_unknown_files_are_refused(tmp_path):
    for i, data in enumerate((b"", b"hello world", b"\x80\x04garbage", b"PK\x03\x04garbage")):
        path = tmp_path / f"u{i}.bin"
        path.write_bytes(data)
        with pytest.raises(EcdcFormatError):
            ecdc.load_tokens(path)
