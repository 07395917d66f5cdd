"""The seed's legacy token files: ``torch.save({"audio_codes", "audio_scales", "audio_length"})``.

Read (never written) so that folders made by the upstream s2 keep working; :func:`workflow.ecdc.load_tokens`
dispatches here for non-ECDC files.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("workflow.ecdc")  # the records keep the name they always had


def _legacy_int(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "numel"):
        if value.numel() != 1 or value.dtype.is_floating_point:
            return None
        value = value.item()
    elif isinstance(value, (list, tuple)) and len(value) == 1:
        return _legacy_int(value[0])
    return int(value) if _is_int(value) or isinstance(value, np.integer) else None


def read_token_header(path: PathLike) -> EcdcHeader:
    """The header of any token file: an `.ecdc` header-only, a legacy torch file loaded whole."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(MAGIC))
    except OSError as exc:
        raise _fail(str(path), f"cannot read file ({exc.strerror or exc})", "check the path") from exc
    return read_ecdc_header(path) if head == MAGIC else load_tokens(path).header


def read_legacy_tokens(path: PathLike) -> EcdcTokens:
    """Read the seed's ``torch.save({"audio_codes", "audio_scales", "audio_length"})`` files.

    ``audio_codes`` may be ``[n_chunks, 1, K, T]``, ``[1, K, T]`` or ``[K, T]``. One chunk
    without scales is EnCodec 24 kHz; several chunks or scales are EnCodec 48 kHz. Loaded with
    ``weights_only=True``, so no code in the file is executed.
    """
    import torch  # heavy; only legacy files need it

    name = str(path)
    hint = "convert it by re-encoding the audio with s2 (wf-wav2encodec24)"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise _fail(name, f"cannot read file ({exc.strerror or exc})", "check the path") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign/corrupt files
        why = f"{type(exc).__name__}: {str(exc)[:120]}"
        raise _fail(name, f"not a loadable legacy token file ({why})", hint) from exc
    if not isinstance(obj, dict) or "audio_codes" not in obj:
        raise _fail(name, "legacy file is not a dict with an 'audio_codes' entry", hint)
    codes = obj["audio_codes"]
    if not isinstance(codes, torch.Tensor) or codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise _fail(name, "legacy 'audio_codes' is not an integer tensor", hint)
    if codes.dim() == 2:
        codes = codes[None, None]
    elif codes.dim() == 3 and codes.shape[0] == 1:
        codes = codes[None]
    elif not (codes.dim() == 4 and codes.shape[1] == 1):
        raise _fail(name, f"legacy 'audio_codes' has shape {tuple(codes.shape)}; expected "
                    "[n_chunks, 1, K, T], [1, K, T] or [K, T]", hint)
    n_chunks, _, k, t = (int(x) for x in codes.shape)
    if n_chunks < 1 or not 1 <= k <= MAX_CODEBOOKS:
        raise _fail(name, f"legacy 'audio_codes' has shape {tuple(codes.shape)}", hint)
    arr = codes[:, 0].numpy()
    if arr.size and (arr.min() < 0 or arr.max() >= 1 << 10):
        raise _fail(name, f"legacy codes span [{arr.min()}, {arr.max()}], not 10-bit EnCodec codes", hint)

    raw_scales = obj.get("audio_scales")
    if raw_scales is None or isinstance(raw_scales, torch.Tensor):
        raw_scales = [raw_scales] * n_chunks if raw_scales is None or n_chunks == 1 else list(raw_scales)
    if not isinstance(raw_scales, (list, tuple)) or len(raw_scales) != n_chunks:
        raise _fail(name, f"legacy 'audio_scales' does not give one entry per chunk ({n_chunks})", hint)
    scales: list[float | None] = []
    for s in raw_scales:
        if s is None:
            scales.append(None)
        elif isinstance(s, torch.Tensor) and s.numel() == 1:
            scales.append(float(s.item()))
        elif isinstance(s, (int, float)) and not isinstance(s, bool):
            scales.append(float(s))
        else:
            raise _fail(name, "legacy 'audio_scales' holds something other than floats/None", hint)
    if any(x is None for x in scales) and any(x is not None for x in scales):
        raise _fail(name, "legacy 'audio_scales' mixes None and numbers", hint)
    scaled = scales[0] is not None

    model = "encodec_48khz" if n_chunks > 1 or scaled else "encodec_24khz"
    table = META_MODELS[model]
    al = _legacy_int(obj.get("audio_length"))
    if "audio_length" in obj and al is None:
        raise _fail(name, f"legacy 'audio_length' is not an integer: {obj['audio_length']!r}", hint)
    if al is None:
        al = t * table.hop if table.segment is None else (n_chunks - 1) * table.stride + t * table.hop
        log.warning("%s: legacy file has no audio_length; assuming %d samples", name, al)
    if not 0 <= al <= MAX_AUDIO_LENGTH:
        raise _fail(name, f"legacy 'audio_length' {al} is out of range", hint)
    meta: dict[str, Any] = {"m": model, "al": al, "nc": k, "lm": False, "bits": table.bits,
                            "sr": table.sample_rate, "fps": table.fps, "hop": table.hop, "legacy": True}
    if table.segment is not None:
        meta.update(seg=table.segment, stride=table.stride, scaled=scaled)
    plan = _build_plan(meta, name)
    if [r.frames for r in plan.runs for _ in range(r.count)] != [t] * n_chunks:
        meta["seg_frames"] = [t] * n_chunks  # e.g. HF's padded equal-size chunks
        plan = _build_plan(meta, name)
    header = EcdcHeader(model, al, k, False, meta, 0)
    header.__dict__["_plan"] = plan
    segments = list(np.ascontiguousarray(arr, dtype=np.int16))
    return EcdcTokens(header, segments, scales)


# Imported last: workflow.ecdc imports this module at its end, so either may be imported first.
from .ecdc import (  # noqa: E402
    MAGIC,
    MAX_AUDIO_LENGTH,
    MAX_CODEBOOKS,
    META_MODELS,
    EcdcHeader,
    EcdcTokens,
    PathLike,
    _build_plan,
    _fail,
    _is_int,
    load_tokens,
    read_ecdc_header,
)
