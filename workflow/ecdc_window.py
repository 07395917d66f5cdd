"""Windows of frames from `.ecdc` files, read without decoding the rest of the file.

A training loader asks for ~2 s out of each file. With the layout of a file known (parsed once
by :func:`window_layout`), :func:`read_window` reads just the window's bytes with one ``pread``
and unpacks them; the whole-file reader (:func:`workflow.ecdc.read_ecdc`) stays the reference.
Frames sit at fixed byte positions only in files of one unscaled segment (what s2 writes for
EnCodec 24 kHz and DAC); segmented files (EnCodec 48 kHz) have no window layout.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from .ecdc import REENCODE_HINT, EcdcHeader, _fail, read_ecdc_header
from .ecdc_bits import ceil_div, unpack_codes
from .files import read_at


class WindowLayout(NamedTuple):
    """Where a one-segment file's packed codes start, and what the header said about them."""

    data_offset: int
    num_codebooks: int
    bits: int
    num_frames: int
    file_size: int  # when parsed: a file of another size has been rewritten since


def layout_of(header: EcdcHeader) -> WindowLayout | None:
    """The window layout of a parsed header, or None when frames are not at fixed positions."""
    if header.num_segments > 1 or header.scaled:
        return None
    size = header.data_offset + header.payload_bytes
    return WindowLayout(header.data_offset, header.num_codebooks, header.bits, header.num_frames, size)


def window_layout(path: str | os.PathLike[str]) -> WindowLayout | None:
    """Parse ``path``'s header once (:class:`EcdcFormatError` if it is not a valid `.ecdc`)."""
    return layout_of(read_ecdc_header(path))


def read_window(path: str | os.PathLike[str], layout: WindowLayout, start: int, n: int,
                dtype: type = np.int16) -> np.ndarray:
    """Frames ``[start, start + n)`` of the file as ``[K, n]`` (int16, or ``dtype``: a loader
    that wants int64 gets it without a second copy), equal to ``read_ecdc(path).codes[:, start:start + n]``.

    Raises :class:`EcdcFormatError` if the window lies outside the file or the file's size is no
    longer the one its layout was parsed from (re-parse it with :func:`window_layout`).
    """
    k, bits = layout.num_codebooks, layout.bits
    if start < 0 or n < 0 or start + n > layout.num_frames:
        raise _fail(str(path), f"window [{start}, {start + n}) is outside the file's "
                    f"{layout.num_frames} frames", "check the row's num_frames")
    period = 8 // math.gcd(k * bits, 8)  # frames after which the bit position is byte-aligned again
    first = start - start % period
    lo = first * k * bits // 8
    hi = ceil_div((start + n) * k * bits, 8)
    try:  # up to 4 bytes past the window: unpack_codes reads 4 bytes per code (the rest is masked)
        raw, size = read_at(path, layout.data_offset + lo, hi - lo + 4)
    except OSError as exc:
        raise _fail(str(path), f"cannot read file ({exc.strerror or exc})", "check the path") from exc
    if size != layout.file_size:
        raise _fail(str(path), f"file is {size} bytes, not the {layout.file_size} its header was "
                    "read from: it changed while in use", REENCODE_HINT)
    if len(raw) < hi - lo:
        raise _fail(str(path), "file ended inside the window's codes")
    codes = unpack_codes(np.frombuffer(raw, np.uint8)[None], start + n - first, k, bits, dtype)[0]
    return codes if first == start else np.ascontiguousarray(codes[:, start - first:])


__all__ = ["WindowLayout", "layout_of", "read_window", "window_layout"]
