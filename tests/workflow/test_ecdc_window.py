"""Windowed `.ecdc` reads against the whole-file reader, on real files in tmp_path."""

from __future__ import annotations

import os

import numpy as np
import pytest

from workflow import ecdc
from workflow.ecdc_window import layout_of, read_window, window_layout
from workflow.errors import EcdcFormatError


@pytest.mark.parametrize("bits,k", [(10, 8), (10, 3), (15, 32), (11, 9), (1, 1)])
def test_every_window_equals_the_whole_file_slice(bits, k, tmp_path):
    """k × bits not a multiple of 8 (10 × 3: windows start between byte boundaries), every start
    in the first periods, lengths 0, 1, short and up to the file's end."""
    frames = 203
    codes = np.random.default_rng(bits + k).integers(0, 1 << bits, (k, frames))
    path = tmp_path / "x.ecdc"
    ecdc.write_ecdc(path, [codes], model="test_codec", audio_length=frames * 4, bits=bits,
                    extra={"sr": 16000, "hop": 4})
    whole = ecdc.read_ecdc(path).codes
    layout = window_layout(path)
    assert layout is not None and (layout.num_codebooks, layout.bits, layout.num_frames) == (k, bits, frames)
    assert layout.file_size == path.stat().st_size
    for start in [*range(0, 17), 100, 190, 202, 203]:
        for n in (0, 1, 5, 20, frames - start):
            if start + n > frames:
                continue
            got = read_window(str(path), layout, start, n)
            assert got.dtype == np.int16 and got.shape == (k, n)
            np.testing.assert_array_equal(got, whole[:, start:start + n])


def test_segmented_and_scaled_files_have_no_window_layout(tmp_path):
    rng = np.random.default_rng(0)
    al = 120_000
    segs = [rng.integers(0, 1024, (4, f)) for f in (150, 150, 78)]  # 48 kHz: 1 s segments, 1 % overlap
    path = tmp_path / "x48.ecdc"
    ecdc.write_ecdc(path, segs, model="encodec_48khz", audio_length=al, bits=10, scales=[1.0, 2.0, 0.5])
    assert window_layout(path) is None
    one = ecdc.encode_ecdc(rng.integers(0, 1024, (4, 30)), model="encodec_24khz", audio_length=9600, bits=10)
    assert layout_of(ecdc.read_ecdc_header(one)) is not None


def test_out_of_range_windows_and_rewritten_files_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "x.ecdc"
    ecdc.write_ecdc(path, rng.integers(0, 1024, (8, 75)), model="encodec_24khz", audio_length=75 * 320, bits=10)
    layout = window_layout(path)
    for start, n in ((70, 6), (-1, 3), (0, 76)):
        with pytest.raises(EcdcFormatError, match="outside the file's 75 frames"):
            read_window(path, layout, start, n)
    # re-encoded in place with another length: the parsed layout no longer describes the file
    ecdc.write_ecdc(path, rng.integers(0, 1024, (8, 150)), model="encodec_24khz", audio_length=150 * 320, bits=10)
    with pytest.raises(EcdcFormatError, match="changed while in use"):
        read_window(path, layout, 0, 10)
    fresh = window_layout(path)
    np.testing.assert_array_equal(read_window(path, fresh, 140, 10), ecdc.read_ecdc(path).codes[:, 140:])
    # truncated behind the reader's back to the same size would be undetectable; a shorter file is not
    with open(path, "r+b") as fh:
        fh.truncate(fresh.file_size - 5)
    with pytest.raises(EcdcFormatError):
        read_window(path, fresh, 140, 10)
    os.remove(path)
    with pytest.raises(EcdcFormatError, match="cannot read file"):
        read_window(path, fresh, 0, 10)
