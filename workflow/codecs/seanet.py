"""Our own trained codec: a SEANet + RVQ autoencoder exported by ``python -m training.autoencoder --export``.

The export is a TorchScript file with a ``codec.json`` entry (sample rate, channels, hop, codebook
size, ``n_q``), so its geometry comes from the file, not from the registry: ``--codec seanet
--weights FILE``. Every ``k`` in ``1..n_q`` is a bandwidth (``k · fps · bits`` bps). README.md, "s2".
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CodecError, WeightsNotFoundError
from .registry import CodecSpec

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Codec

NAME = "seanet"
FORMAT = "enc-hf-workflow/seanet-codec"  # written by training/autoencoder/export.py
_HOW = "python -m training.autoencoder --out RUN --export FILE (a run trained with model.quantizer=rvq)"


def is_seanet(name: Any) -> bool:
    """Whether ``name`` (a codec name or spec) means our own exported SEANet codec."""
    if isinstance(name, CodecSpec):
        return name.family == NAME
    return isinstance(name, str) and name.strip().lower() == NAME


def _export_path(weights: str | os.PathLike) -> Path:
    w = os.fspath(weights)
    path = Path(w).expanduser()
    if w in ("pretrained", "random") or not path.is_file():
        what = f"{w!r} is not a file" if w not in ("pretrained", "random") else f"{w!r} weights do not exist for it"
        raise WeightsNotFoundError(f"codec {NAME} is our own trained codec and needs --weights EXPORT_FILE ({what}); "
                                   f"make one with: {_HOW}")
    return path


def read_meta(weights: str | os.PathLike) -> dict[str, Any]:
    """The ``codec.json`` of an export, read from the TorchScript zip without loading the model."""
    path = _export_path(weights)
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/extra/codec.json")), None)
            meta = json.loads(zf.read(name)) if name else None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CodecError(f"{path}: not a {NAME} codec export ({exc}); make one with: {_HOW}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CodecError(f"{path}: no {FORMAT} codec.json inside; make the file with: {_HOW}")
    return meta


def spec_from_meta(meta: dict[str, Any]) -> CodecSpec:
    """The :class:`CodecSpec` of an export: one bandwidth per codebook count ``1..n_q``."""
    sr, hop, bits, n_q = int(meta["sample_rate"]), int(meta["hop_length"]), int(meta["bits"]), int(meta["n_q"])
    ks = tuple(range(1, n_q + 1))
    bandwidths = tuple(round(k * sr / hop * bits / 1000, 2) for k in ks)
    return CodecSpec(NAME, "", NAME, sr, int(meta["channels"]), hop, int(meta["codebook_size"]), bandwidths, ks,
                     bandwidths[-1], causal=bool(meta.get("causal", False)), backends=("torchscript",),
                     notes="our own trained SEANet + RVQ codec (training/autoencoder/export.py)")


def read_spec(weights: str | os.PathLike) -> CodecSpec:
    """The spec of the export ``weights`` (UsageError-family errors naming how to make one)."""
    return spec_from_meta(read_meta(weights))


def load_seanet(weights: str | os.PathLike, *, device: Any, bandwidth: float | None,
                max_chunk_seconds: float | None) -> Codec:
    """A ready :class:`Codec` for an export (weights provenance: the file's sha256)."""
    import torch

    from .runtime import Codec
    from .weights import _hash_files

    path = _export_path(weights)
    spec = read_spec(path)
    try:
        model = torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        raise CodecError(f"{path}: cannot load the {NAME} export ({exc}); re-export it with: {_HOW}") from exc
    model.eval()
    if bandwidth is None:
        bandwidth = spec.default_bandwidth
    if max_chunk_seconds is not None and max_chunk_seconds <= 0:
        max_chunk_seconds = None
    return Codec(spec, model, backend="torchscript", device=device, bandwidth=bandwidth,
                 weights_id="sha256:" + _hash_files([path]), max_chunk_seconds=max_chunk_seconds)


def resolve_spec(name: str | CodecSpec, weights: str | os.PathLike = "pretrained") -> CodecSpec:
    """:func:`~.registry.get_spec`, except that ``seanet`` takes its spec from its ``weights`` file."""
    from .registry import get_spec

    if is_seanet(name) and not isinstance(name, CodecSpec):
        return read_spec(weights)
    return get_spec(name)
