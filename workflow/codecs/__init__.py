"""Neural audio codecs, so that every stage agrees on what a codec name means and how audio becomes codes.

Re-exports :mod:`.registry` (:data:`CODECS` of frozen :class:`CodecSpec`, :func:`get_spec`,
:func:`build_config`, config checks), :mod:`.runtime` (:meth:`Codec.encode_batch` → :class:`Encoded`
records, decoding; padding and batching rules in its docstring), :mod:`.weights` (:func:`load_codec`:
pretrained, ``save_pretrained`` folders, Meta ``.th``) and :mod:`.random_weights`.
Importing this does not import torch, so that ``--help`` and the registry stay fast.
"""

from __future__ import annotations

from ..device import resolve_device
from ..errors import CodecBackendError, CodecError, DeviceError, UsageError, WeightsNotFoundError
from .random_weights import RANDOM_SEED, _condition_encodec_latents, _quantizer_input, _randomize_codebooks
from .registry import CODECS, DEFAULT_CODEC, CodecSpec, build_config, codec_names, get_spec
from .runtime import Codec, Encoded
from .seanet import resolve_spec
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
    "resolve_spec",
    "resolve_device",
]
