"""Bit packing of `.ecdc` payloads: both unpacking strategies against the packer and each other."""

from __future__ import annotations

import numpy as np
import pytest

from workflow import ecdc_bits
from workflow.ecdc_bits import GATHER_MAX_CODES, ceil_div, pack_rows, unpack_codes


def packed(rng: np.random.Generator, rows: int, k: int, frames: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    codes = rng.integers(0, 1 << bits, (rows, k, frames))
    flat = codes.transpose(0, 2, 1).reshape(rows, frames * k)  # frame-major, as in the file
    return codes, pack_rows(flat, bits)


@pytest.mark.parametrize("bits,k", [(15, 32), (15, 3), (11, 9), (13, 16), (10, 8), (1, 1), (7, 5), (10, 3)])
@pytest.mark.parametrize("rows,frames", [(1, 150), (1, 1), (3, 7), (2, 1003)])
def test_gather_and_strided_unpack_agree_with_the_packer(bits, k, rows, frames):
    """Every width up to 15, k × bits not a multiple of 8 (bit offsets realign only every few
    frames), one and several rows, exactly ``ceil(frames*k*bits/8)`` bytes (no slack)."""
    rng = np.random.default_rng(bits * 1000 + k * 10 + frames)
    codes, data = packed(rng, rows, k, frames, bits)
    assert data.shape == (rows, ceil_div(frames * k * bits, 8))
    want = codes.astype(np.uint16).view(np.int16)
    for unpack in (ecdc_bits._unpack_gather, ecdc_bits._unpack_strided, unpack_codes):
        got = unpack(data, frames, k, bits)
        assert got.dtype == np.int16 and got.shape == (rows, k, frames)
        np.testing.assert_array_equal(got, want)


def test_the_size_threshold_picks_the_strategy(monkeypatch):
    calls = []
    for name in ("_unpack_gather", "_unpack_strided"):
        real = getattr(ecdc_bits, name)
        monkeypatch.setattr(ecdc_bits, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = np.random.default_rng(0)
    frames = GATHER_MAX_CODES // 8
    for n in (frames, frames + 1):
        codes, data = packed(rng, 1, 8, n, 10)
        np.testing.assert_array_equal(unpack_codes(data, n, 8, 10), codes)
    assert calls == ["_unpack_gather", "_unpack_strided"]
    assert unpack_codes(np.zeros((1, 0), np.uint8), 0, 8, 10).shape == (1, 8, 0)


def test_read_only_and_sliced_inputs_are_not_modified():
    rng = np.random.default_rng(1)
    codes, data = packed(rng, 1, 4, 50, 11)
    frozen = np.frombuffer(data.tobytes() + b"\xff" * 5, np.uint8)[None]  # bytes: read-only
    np.testing.assert_array_equal(unpack_codes(frozen, 50, 4, 11), codes)  # trailing bytes ignored
    wide = np.zeros((2, data.shape[1] + 3), np.uint8)[:1, :data.shape[1]]  # not C-contiguous
    wide[:] = data
    np.testing.assert_array_equal(ecdc_bits._unpack_strided(wide, 50, 4, 11), codes)
    np.testing.assert_array_equal(ecdc_bits._unpack_gather(wide, 50, 4, 11), codes)
