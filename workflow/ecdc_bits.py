"""LSB-first bit packing of codec codes, the payload encoding of `.ecdc` files.

Codes are packed frame-major (frame 0's K codes, then frame 1's, …), ``bits`` bits each, least
significant bit first, as Meta's EnCodec container does. Unpacking has two strategies with the
same result: a gather through cached byte indices for small blocks (a training window: few numpy
calls, whatever K is) and one strided read per codebook and phase for large ones (a whole file:
no index arrays as big as the file).
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Above this many codes in all rows, the strided unpacker is used (its cost is ~2 numpy calls per
#: codebook and phase, the gather's is ~8 bytes of index per code).
GATHER_MAX_CODES = 1 << 15


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=32)
def _gather_plan(frames: int, k: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte index and bit shift of every code, laid out ``[k, frames]`` (read-only, shared)."""
    pos = np.arange(frames * k, dtype=np.int64).reshape(frames, k).T * bits
    byte, shift = (pos >> 3).astype(np.intp), (pos & 7).astype(np.uint32)
    byte.flags.writeable = shift.flags.writeable = False
    return byte, shift


def _unpack_gather(rows: np.ndarray, frames: int, k: int, bits: int, dtype: type = np.int16) -> np.ndarray:
    """One gather of little-endian 4-byte words at each code's byte (an unaligned, overlapping
    view of the bytes: bits <= 15 and a shift <= 7 fit in them), then shift and mask."""
    byte, shift = _gather_plan(frames, k, bits)
    need = int(byte[-1, -1]) + 4
    buf = rows
    if rows.shape[1] < need or not rows.flags.c_contiguous:
        buf = np.zeros((rows.shape[0], need), np.uint8)
        got = min(need, rows.shape[1])
        buf[:, :got] = rows[:, :got]
    words = np.ndarray((buf.shape[0], need - 3), "<u4", buffer=buf, strides=(buf.strides[0], 1))
    v = words[:, byte]
    v >>= shift
    v &= (1 << bits) - 1
    return v.astype(dtype)


def _unpack_strided(rows: np.ndarray, frames: int, k: int, bits: int) -> np.ndarray:
    """Over ``period`` frames the bit offset returns to a byte boundary, so codebook ``c`` at phase
    ``p`` is one strided little-endian read (2 or 4 bytes, unaligned), shifted and masked, written
    to ``out[:, c, p::period]``: no per-byte merging and no transposing copy."""
    s_rows = rows.shape[0]
    out = np.empty((s_rows, k, frames), dtype=np.int16)
    period = 8 // math.gcd(k * bits, 8)
    stride = period * k * bits // 8  # bytes from one period to the next
    reads = []
    for phase in range(min(period, frames)):
        for c in range(k):
            pos = (phase * k + c) * bits
            dt = np.dtype("<u4" if (pos & 7) + bits > 16 else "<u2")
            reads.append((phase, c, pos >> 3, pos & 7, dt, ceil_div(frames - phase, period)))
    need = max(first + (n - 1) * stride + dt.itemsize for _, _, first, _, dt, n in reads)
    buf = rows
    if rows.shape[1] < need or not rows.flags.c_contiguous:  # room for the last wide read
        buf = np.zeros((s_rows, max(need, rows.shape[1])), dtype=np.uint8)
        buf[:, : rows.shape[1]] = rows
    mask = (1 << bits) - 1
    for phase, c, first, shift, dt, n in reads:
        v = np.ndarray((s_rows, n), dt, buffer=buf, offset=first, strides=(buf.strides[0], stride))
        np.bitwise_and(v >> dt.type(shift), dt.type(mask), out=out[:, c, phase::period], casting="unsafe")
    return out


def unpack_codes(rows: np.ndarray, frames: int, k: int, bits: int, dtype: type = np.int16) -> np.ndarray:
    """Decode each row of ``rows`` (uint8 ``[S, >= ceil(frames*k*bits/8)]``) into
    ``[S, k, frames]`` of int16 (or ``dtype``, e.g. int64 for a loader); ``bits`` <= 15."""
    if frames == 0 or k == 0 or rows.shape[0] == 0:
        return np.empty((rows.shape[0], k, frames), dtype=dtype)
    if rows.shape[0] * frames * k <= GATHER_MAX_CODES:
        return _unpack_gather(rows, frames, k, bits, dtype)
    codes = _unpack_strided(rows, frames, k, bits)
    return codes if dtype == np.int16 else codes.astype(dtype)


def pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """Bit-pack each row of ``values`` (``[S, n]``, < 2**bits) LSB-first → uint8 ``[S, ceil(n*bits/8)]``."""
    s_rows, n = values.shape
    groups = ceil_div(n, 8)
    lanes = np.zeros((s_rows, groups * 8), dtype=np.uint32)
    lanes[:, :n] = values
    lanes = lanes.reshape(s_rows, groups, 8)
    out = np.zeros((s_rows, groups, bits), dtype=np.uint8)
    for lane in range(8):
        pos = lane * bits
        v = lanes[:, :, lane]
        for byte in range(pos >> 3, ((pos + bits - 1) >> 3) + 1):
            sh = 8 * byte - pos
            piece = v >> np.uint32(sh) if sh >= 0 else v << np.uint32(-sh)
            out[:, :, byte] |= piece.astype(np.uint8)  # wraps modulo 256: keeps the low byte
    return out.reshape(s_rows, groups * bits)[:, : ceil_div(n * bits, 8)]


__all__ = ["GATHER_MAX_CODES", "ceil_div", "pack_rows", "unpack_codes"]
