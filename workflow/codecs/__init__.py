"""Neural audio codecs: the registry, ``load_codec(...)``, batched encode/decode, weights resolution.

Every stage that touches codec tokens goes through this package, so all of them agree on what a
codec name means and on how audio becomes codes. This module re-exports the whole API:

* :mod:`.registry` — :data:`CODECS` (one frozen :class:`CodecSpec` per codec), :func:`get_spec`,
  :func:`build_config` and the checks of a model config against the registry.
* :mod:`.runtime` — :class:`Codec` (:meth:`Codec.encode_batch` → :class:`Encoded` records, i.e.
  what an ``.ecdc`` file stores; its docstring gives the padding and batching rules) and decoding.
* :mod:`.weights` — :func:`load_codec`: ``"pretrained"`` (HF cache/hub), ``save_pretrained``
  folders, Meta's EnCodec ``.th`` checkpoints; :mod:`.random_weights` — ``"random"`` weights.
* :func:`resolve_device` lives in :mod:`workflow.device`.

Importing this package does not import torch (``--help`` and the registry stay fast).
"""

from __future__ import annotations

from ..device import resolve_device
from ..errors import CodecBackendError, CodecError, DeviceError, UsageError, WeightsNotFoundError
from .random_weights import RANDOM_SEED, _condition_encodec_latents, _quantizer_input, _randomize_codebooks
from .registry import CODECS, DEFAULT_CODEC, CodecSpec, build_config, codec_names, get_spec
from .runtime import Codec, Encoded
from .weights import convert_meta_encodec_state_dict, load_codec

# The private names above are re-exported for tests. To monkeypatch a helper, patch it in the
# submodule that defines and calls it (e.g. ``workflow.codecs.weights._hf_offline``): a patch
# on this package would not be seen by the code.

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "Codec",
    "CodecBackendError",
    "CodecError",
    "CodecSpec",
    "DeviceError",
    "Encoded",
    "UsageError",
    "WeightsNotFoundError",
    "build_config",
    "codec_names",
    "convert_meta_encodec_state_dict",
    "get_spec",
    "load_codec",
    "resolve_device",
]
