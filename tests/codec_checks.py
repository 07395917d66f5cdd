"""What batching preserves in a residual-VQ codec, asserted exactly (README: "What batching preserves").

Encoding an item inside a batch runs the same network on a differently shaped tensor, so
floating-point sums are grouped differently: the pre-quantisation latents agree to within
rounding, not bit for bit. A quantiser then picks the nearest codeword; where the best and the
second-best codeword are closer than that rounding (a near-tie), the pick can flip, and since each
residual stage quantises what the previous ones left, the later codebooks of that frame can change
too. Everywhere else the codes must be identical. These helpers compute, along the one-at-a-time
path and in float64, each frame's margin between the chosen codeword and every rival, and a
bound on how much rounding plus the latent difference can move it:

    tau = 2 * delta * |e_best - e_j|  +  2 * D * eps32 * (|r| + |e_best|) * (|r| + |e_j|)

The first term is the change of ``|r - e_j|^2 - |r - e_best|^2`` when the residual ``r`` moves by
``delta``; the second is the worst-case float32 error of the two distances as the quantiser
computes them (``|r|^2 - 2 r.e + |e|^2``, D-term sums; Higham's gamma_D bound), for each
rival. A frame may differ from the one-at-a-time codes only from a level where some rival lies
within ``tau`` of the chosen codeword. Padding leaking into valid frames, shifted frames, swapped
items or wrong lengths move codes on frames with wide margins, and fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EPS32 = float(np.finfo(np.float32).eps)
LATENT_RTOL = 5e-5
"""Latents of an item in a batch vs alone: |dz| <= LATENT_RTOL * max|z| (measured here: 3e-7 to 2.5e-5)."""


@dataclass
class Margins:
    """Per level k and frame t: ``tie[k, t]`` is True where a rival codeword lies within tau."""

    codes: np.ndarray  # [K, T] the one-at-a-time codes the margins were computed along
    margin: np.ndarray  # [K, T] distance gap to the nearest rival (float64; <= 0: float32 chose otherwise)
    tie: np.ndarray  # [K, T] bool

    @property
    def tie_frames(self) -> np.ndarray:
        return self.tie.any(axis=0)

    @classmethod
    def concat(cls, parts: list[Margins]) -> Margins:
        """Frames of several segments side by side (checked together: a 2-frame tail is no sample)."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in ("codes", "margin", "tie")))


def encodec_latents(codec, row: np.ndarray) -> torch.Tensor:
    """Pre-quantisation latents ``[D, T]`` (float64) of one model input row ``[C, L]``."""
    with torch.inference_mode():
        z = codec.model.encoder(torch.from_numpy(np.ascontiguousarray(row, dtype=np.float32))[None])[0]
    return z.double()


def padded_row(codec, audio: np.ndarray) -> np.ndarray:
    """``audio`` zero-padded to a whole number of hops, as the codec feeds a single item."""
    hop = codec.spec.hop_length
    row = np.zeros((audio.shape[0], -(-audio.shape[1] // hop) * hop), dtype=np.float32)
    row[:, :audio.shape[1]] = audio
    return row


def encodec_margins(codec, z: torch.Tensor, codes: np.ndarray, delta: float | np.ndarray) -> Margins:
    """Margins of EnCodec's residual quantiser along ``codes`` for latents ``z`` ``[D, T]``."""
    with torch.no_grad():
        return _encodec_margins(codec, z, codes, delta)


def _encodec_margins(codec, z, codes, delta) -> Margins:
    layers = codec.model.quantizer.layers[:codes.shape[0]]
    d = z.shape[0]
    r = z.clone()
    delta = torch.as_tensor(np.array(np.broadcast_to(delta, (z.shape[1],))), dtype=torch.float64)
    margins, ties = [], []
    for k, layer in enumerate(layers):
        e = layer.codebook.embed.double()  # [bins, D]
        c = torch.from_numpy(codes[k].astype(np.int64))
        dist = (r * r).sum(0)[:, None] - 2 * r.T @ e.T + (e * e).sum(1)[None]  # [T, bins]
        gap = dist - dist.gather(1, c[:, None])
        e_best = e[c]  # [T, D]
        pair = torch.cdist(e_best, e)  # |e_best - e_j|, [T, bins]
        rn, en = r.norm(dim=0)[:, None], e.norm(dim=1)[None]
        tau = 2 * delta[:, None] * pair + 2 * d * EPS32 * (rn + e_best.norm(dim=1)[:, None]) * (rn + en)
        rival = torch.ones_like(gap, dtype=torch.bool)
        rival.scatter_(1, c[:, None], False)
        gap_r = gap.masked_fill(~rival, float("inf"))
        margins.append(gap_r.min(1).values.numpy())
        ties.append(((gap_r <= tau) & rival).any(1).numpy())
        r = r - e_best.T
    return Margins(codes, np.array(margins), np.array(ties))


def assert_codes_match_up_to_ties(got: np.ndarray, margins: Margins, *, what: str = "codes",
                                  max_tie_fraction: float = 0.1) -> int:
    """``got`` equals the one-at-a-time codes except from a near-tie level on; returns #differing frames.

    Also checks that near-ties are rare (``max_tie_fraction`` of frames), so that the check keeps
    its power: if most frames were ties, almost anything would pass.
    """
    ref = margins.codes
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    tie_frac = float(margins.tie_frames.mean())
    assert tie_frac <= max_tie_fraction, f"{what}: {tie_frac:.1%} of frames are near-ties; the check has no power"
    diff = got != ref
    frames = np.flatnonzero(diff.any(axis=0))
    for t in frames:
        k0 = int(np.argmax(diff[:, t]))
        assert margins.tie[:k0 + 1, t].any(), (
            f"{what}: frame {t} differs from codebook {k0} on, but its nearest-codeword margins "
            f"{margins.margin[:k0 + 1, t]} exceed the rounding bound: not a near-tie")
    return len(frames)


def dac_margins(codec, row: np.ndarray, codes: np.ndarray, rtol: float = LATENT_RTOL) -> Margins:
    """Margins of DAC's factorised, l2-normalised quantiser (a cosine-similarity argmax) along ``codes``.

    The rounding of DAC's input/output projections compounds level by level, so each level's
    residual is allowed to move by ``rtol`` times its own largest norm (plus the float32 bound).
    """
    with torch.no_grad():
        return _dac_margins(codec, row, codes, rtol)


def _dac_margins(codec, row, codes, rtol) -> Margins:
    r = codec.model.encoder(torch.from_numpy(np.ascontiguousarray(row))[None])[0].double()
    margins, ties = [], []
    for k, q in enumerate(codec.model.quantizer.quantizers[:codes.shape[0]]):
        w_in, b_in = q.in_proj.weight.double()[:, :, 0], q.in_proj.bias.double()
        w_out, b_out = q.out_proj.weight.double()[:, :, 0], q.out_proj.bias.double()
        p = w_in @ r + b_in[:, None]  # [d, T]
        pn = F.normalize(p.T, dim=1)  # [T, d]
        cb = F.normalize(q.codebook.weight.double(), dim=1)  # [bins, d]
        c = torch.from_numpy(codes[k].astype(np.int64))
        score = 2 * pn @ cb.T  # what the argmax ranks, up to per-frame constants
        gap = score.gather(1, c[:, None]) - score
        # |p| moves by at most |W_in| * delta(r); the direction by that over |p|.
        delta_r = rtol * float(r.norm(dim=0).max())
        dp = float(torch.linalg.matrix_norm(w_in, 2)) * delta_r / p.norm(dim=0).clamp_min(1e-12)
        tau = 4 * dp[:, None] + 8 * cb.shape[1] * EPS32
        rival = torch.ones_like(gap, dtype=torch.bool)
        rival.scatter_(1, c[:, None], False)
        gap_r = gap.masked_fill(~rival, float("inf"))
        margins.append(gap_r.min(1).values.numpy())
        ties.append(((gap_r <= tau) & rival).any(1).numpy())
        r = r - (w_out @ q.codebook.weight.double()[c].T + b_out[:, None])
    return Margins(codes, np.array(margins), np.array(ties))
