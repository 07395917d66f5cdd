"""Weights resolution and :func:`load_codec`: pretrained, local folders, Meta checkpoints, random.

``"pretrained"`` goes through the Hugging Face cache first (honouring ``HF_HUB_OFFLINE``,
``HF_HOME``/``HF_HUB_CACHE`` as set *now*, with one quick reachability check instead of the hub
client's retries), then the hub; local paths are ``save_pretrained`` folders or checkpoint files,
Meta's EnCodec ``.th`` state dicts being converted to ``transformers``' layout. Every load records
a provenance string (``weights_id``). torch is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..device import resolve_device
from ..errors import CodecBackendError, CodecError, UsageError, WeightsNotFoundError
from .random_weights import _load_random, _randomize_codebooks, _seeded_random
from .registry import DEFAULT_CODEC, CodecSpec, _check_config, _model_classes, build_config, get_spec
from .runtime import Codec
from .seanet import is_seanet, load_seanet

if TYPE_CHECKING:  # torch is imported lazily so that `--help` and the registry stay fast
    import torch

log = logging.getLogger(__package__)  # "workflow.codecs", the logger name from before the split

# Meta's published checkpoints (see `encodec.model.EncodecModel.encodec_model_24khz/48khz`).
_META_CHECKPOINTS = {
    "encodec_24khz": "encodec_24khz-d7cc33bc.th",
    "encodec_48khz": "encodec_48khz-7e698e3e.th",
}
_META_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hf_offline() -> bool:
    """Offline mode, read from the environment *now* (huggingface_hub reads it once at import)."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - very old/new hub versions
        return False


def _hf_cache_dir() -> str | None:
    """The hub cache folder from the environment now (``None``: huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _hub_commit(repo_id: str, cache_dir: str | None) -> str | None:
    """Commit hash of the cached snapshot that ``from_pretrained`` used, if it can be found."""
    try:
        from huggingface_hub import try_to_load_from_cache
        path = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - provenance is best effort
        return None
    match = re.search(r"snapshots[/\\]([0-9a-f]{40})[/\\]", str(path)) if isinstance(path, str) else None
    return match.group(1) if match else None


def _not_found_message(spec: CodecSpec, repo_id: str, reason: str) -> str:
    cache = _hf_cache_dir() or "the default Hugging Face cache (~/.cache/huggingface/hub)"
    mode = " (offline mode: HF_HUB_OFFLINE=1)" if _hf_offline() else ""
    return (
        f"weights for codec {spec.name} ({repo_id}) are not in {cache} and could not be downloaded"
        f"{mode}. Fix one of:\n"
        f"  1. cache them: run once with network access, or `huggingface-cli download {repo_id}` "
        "(same cache; HF_HUB_OFFLINE=1 works afterwards);\n"
        "  2. pass local weights with `--weights PATH`: a folder in `save_pretrained` layout "
        "(config.json + model.safetensors) or an original EnCodec `.th` checkpoint;\n"
        "  3. use `--weights random` for a smoke test (untrained model; outputs record "
        "\"weights\": \"random\").\n"
        f"Underlying error: {reason}"
    )


def _hash_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _folder_weight_files(folder: Path) -> list[Path]:
    files = [folder / "config.json"]
    files += sorted(p for p in folder.iterdir()
                    if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json"))
    return files


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub endpoint cannot be reached (``None`` if a TCP connection opens).

    One quick connect instead of huggingface_hub's ~20 s of retries when there is no network;
    behind a proxy, one quick HEAD request through it (a dead proxy cost ~25 s of retries).
    """
    import socket
    from urllib.parse import urlsplit

    try:
        from huggingface_hub import constants
        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return _unreachable_via_proxy(endpoint, timeout)
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {endpoint} ({exc})"


def _unreachable_via_proxy(endpoint: str, timeout: float) -> str | None:
    """Why ``endpoint`` cannot be reached through the environment's proxy (``None``: it answered)."""
    import ssl
    import urllib.error
    import urllib.request

    try:
        # a fresh opener: urlopen's global one keeps the proxies of its first use
        opener = urllib.request.build_opener(urllib.request.ProxyHandler())
        opener.open(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError as exc:  # an answer; from the proxy itself when it refuses
        return f"cannot reach {endpoint} through the proxy (HTTP {exc.code})" \
            if exc.code in (403, 407) or exc.code >= 500 else None
    except (OSError, ValueError) as exc:  # URLError, timeouts, a malformed proxy URL
        if isinstance(getattr(exc, "reason", exc), ssl.SSLError):
            return None  # reached something; certificates are the hub client's business
        return f"cannot reach {endpoint} through the proxy ({getattr(exc, 'reason', exc)})"
    return None


def _load_pretrained(spec: CodecSpec, repo_id: str) -> tuple[Any, str]:
    """``from_pretrained`` from the HF cache if it is there, else from the hub (unless offline).

    The cache is tried first: codec weights are frozen, and without network (but without
    ``HF_HUB_OFFLINE`` either) huggingface_hub would otherwise retry for ~20 s before using it.
    """
    import torch

    _, model_cls = _model_classes(spec.family)
    cache_dir = _hf_cache_dir()
    offline = _hf_offline()
    try:
        from huggingface_hub import errors as hub_errors
        hub_exc: tuple[type[BaseException], ...] = (hub_errors.EntryNotFoundError,)
    except Exception:  # noqa: BLE001
        hub_exc = ()
    attempts = [True] if offline else [True, False]
    for local_only in attempts:
        if not local_only and (why := _hub_unreachable()) is not None:
            raise WeightsNotFoundError(_not_found_message(spec, repo_id, why))
        log.info("loading %s from %s (%s, cache %s)", spec.name, repo_id,
                 "cache only" if local_only else "hub", cache_dir or "default")
        try:
            model = model_cls.from_pretrained(repo_id, cache_dir=cache_dir, local_files_only=local_only,
                                              dtype=torch.float32)
            break
        except (OSError, *hub_exc) as exc:
            if local_only and not offline:
                log.debug("%s is not (fully) cached: %s", repo_id, exc)
                continue
            raise WeightsNotFoundError(_not_found_message(spec, repo_id, f"{type(exc).__name__}: {exc}")) from exc
    _check_config(spec, model.config, repo_id)
    commit = _hub_commit(repo_id, cache_dir)
    return model, f"{repo_id}@{commit}" if commit else repo_id


def _load_folder(spec: CodecSpec, folder: Path) -> tuple[Any, str]:
    import torch

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise WeightsNotFoundError(f"weights folder {folder} has no config.json; expected a "
                                   "`save_pretrained` folder (config.json + model.safetensors)")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise CodecError(f"{config_path}: unreadable config ({exc})") from exc
    if model_type != spec.family:
        raise CodecError(f"{folder} holds a {model_type!r} model but codec {spec.name} is a "
                         f"{spec.family!r} model; pick the matching --codec")
    _, model_cls = _model_classes(spec.family)
    try:
        model = model_cls.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except OSError as exc:
        raise WeightsNotFoundError(f"{folder}: could not load weights ({exc}); expected a "
                                   "`save_pretrained` folder (config.json + model.safetensors)") from exc
    _check_config(spec, model.config, str(folder))
    return model, "sha256:" + _hash_files(_folder_weight_files(folder))


_META_KEY = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.(.+)$")
_META_VQ_KEY = re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)$")


def convert_meta_encodec_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a Meta ``encodec`` state dict to ``transformers``' ``EncodecModel`` names.

    Meta wraps every convolution twice (``SConv1d.conv`` → ``NormConv1d.conv``/``.norm``) and its
    weight norm stores ``weight_g``/``weight_v``; transformers has one wrapper (``.conv``/``.norm``)
    and a weight-norm parametrization (``original0``/``original1``). Sequential indices are the
    same on both sides, so the renaming is purely structural:

    ``encoder.model.1.block.1.conv.conv.weight_g`` → ``encoder.layers.1.block.1.conv.parametrizations.weight.original0``
    ``decoder.model.3.convtr.norm.weight`` → ``decoder.layers.3.norm.weight``
    ``quantizer.vq.layers.5._codebook.embed`` → ``quantizer.layers.5.codebook.embed``
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        vq = _META_VQ_KEY.match(key)
        if vq:
            out[f"quantizer.layers.{vq.group(1)}.codebook.{vq.group(2)}"] = value
            continue
        m = _META_KEY.match(key)
        if not m:
            raise CodecError(f"unexpected key {key!r} in EnCodec checkpoint")
        side, index, rest = m.groups()
        rest = re.sub(r"\b(?:conv|convtr)\.(?:conv|convtr)\.", "conv.", rest)  # SConv1d.conv.conv -> conv
        rest = re.sub(r"\b(?:conv|convtr)\.norm\.", "norm.", rest)  # SConv1d.conv.norm -> norm
        rest = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", rest)
        rest = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", rest)
        out[f"{side}.layers.{index}.{rest}"] = value
    return out


def _read_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles with custom objects, truncated files, ...
        raise CodecError(f"{path}: not a loadable state-dict checkpoint ({type(exc).__name__}: {exc}). "
                         "Expected Meta's EnCodec .th file (a plain state dict).") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise CodecError(f"{path}: checkpoint is not a state dict (got {type(state).__name__})")
    return dict(state)


def _load_state_into(model: Any, state: Mapping[str, Any], path: Path) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CodecError(f"{path}: weights do not fit this codec's architecture: {exc}") from exc
    if missing or unexpected:
        raise CodecError(f"{path}: checkpoint does not match the model: missing {sorted(missing)[:5]}"
                         f"{'…' if len(missing) > 5 else ''}, unexpected {sorted(unexpected)[:5]}"
                         f"{'…' if len(unexpected) > 5 else ''}")


def _load_checkpoint_file(spec: CodecSpec, path: Path, overrides: Mapping[str, Any] | None) -> tuple[Any, str]:
    state = _read_checkpoint(path)
    is_meta = any(k.startswith(("encoder.model.", "quantizer.vq.")) for k in state)
    if is_meta:
        if spec.name not in _META_CHECKPOINTS:
            raise UsageError(f"{path} is a Meta EnCodec checkpoint; those exist for "
                             f"{', '.join(_META_CHECKPOINTS)} only, not {spec.name}")
        state = convert_meta_encodec_state_dict(state)
    elif spec.family != "encodec" and path.suffix != ".safetensors":
        raise UsageError(f"checkpoint files are supported for Meta EnCodec models; for {spec.name} "
                         "pass a `save_pretrained` folder with --weights")
    _, model_cls = _model_classes(spec.family)
    config = build_config(spec, overrides)
    _check_config(spec, config, str(path))
    with _seeded_random():
        model = model_cls(config)
    _load_state_into(model, state, path)
    return model, "sha256:" + _hash_files([path])


def _import_meta_encodec() -> Any:
    try:
        import encodec  # noqa: F401 - imports torchaudio at import time
        from encodec import EncodecModel as MetaEncodecModel
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken torchaudio raising anything
        raise CodecBackendError(
            f"backend 'encodec' needs Meta's `encodec` package, which could not be imported "
            f"({type(exc).__name__}: {exc}). Install `encodec` and a torchaudio matching your torch, "
            "or use the default backend 'transformers' (same weights, no torchaudio needed).") from exc
    return MetaEncodecModel


def _meta_checkpoint(spec: CodecSpec) -> Path:
    """Meta's published checkpoint for ``spec`` in torch.hub's cache, downloaded if missing
    (hash-checked, and unpickled with ``weights_only=True``: tensors only, no code)."""
    import torch

    name = _META_CHECKPOINTS[spec.name]
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        if _hf_offline():
            raise WeightsNotFoundError(_not_found_message(
                spec, f"{_META_URL}{name}", f"{path} is not cached and offline mode is on"))
        try:
            torch.hub.load_state_dict_from_url(_META_URL + name, map_location="cpu", check_hash=True,
                                               weights_only=True)
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, hash mismatch, unsafe pickle
            path.unlink(missing_ok=True)  # a file that is not a plain state dict is not kept
            raise WeightsNotFoundError(_not_found_message(spec, _META_URL + name, str(exc))) from exc
    return path


def _load_meta(spec: CodecSpec, weights: str | Path) -> tuple[Any, str]:
    """Meta's ``encodec`` model (24/48 kHz) with pretrained, random or ``.th`` weights."""
    if spec.name not in _META_CHECKPOINTS:
        raise UsageError(f"backend 'encodec' provides {', '.join(_META_CHECKPOINTS)} only, not {spec.name}; "
                         "use --backend transformers")
    meta_cls = _import_meta_encodec()
    factory = getattr(meta_cls, f"encodec_model_{spec.name.split('_')[1]}")
    with _seeded_random():
        model = factory(pretrained=False)
    if weights == "random":
        with _seeded_random():
            _randomize_codebooks(model.eval(), spec)
        return model, "random"
    path = _meta_checkpoint(spec) if weights == "pretrained" else Path(weights)
    if path.is_dir():
        raise UsageError(f"backend 'encodec' loads Meta .th checkpoints, not folders ({path}); "
                         "use --backend transformers for save_pretrained folders")
    state = _read_checkpoint(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CodecError(f"{path}: not a Meta {spec.name} checkpoint: {exc}") from exc
    return model, "sha256:" + _hash_files([path])


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def expected_weights_id(name: str = DEFAULT_CODEC, weights: str | os.PathLike = "pretrained",
                        backend: str = "transformers") -> str | None:
    """The provenance :func:`load_codec` would record, found without loading a model (for s2's
    ``--dry-run``/``--list-missing``). A hub id without ``@commit`` means "not cached yet" (any
    commit of that repo matches, see :func:`weights_match`); ``None``: not knowable before loading."""
    w = os.fspath(weights) if isinstance(weights, os.PathLike) else str(weights)
    if is_seanet(name):  # our own export: its provenance is the file's hash
        return "sha256:" + _hash_files([Path(w)]) if Path(w).is_file() else None
    spec = get_spec(name)
    if w == "random":
        return "random"
    if backend == "encodec":
        path = (Path(_torch_hub_dir()) / "checkpoints" / _META_CHECKPOINTS.get(spec.name, "?")
                if w == "pretrained" else Path(w))
        return "sha256:" + _hash_files([path]) if path.is_file() else None
    path = Path(w).expanduser()
    if w == "pretrained" or (not path.exists() and _HUB_ID.match(w) and not w.startswith((".", "/"))):
        repo = spec.hub_id if w == "pretrained" else w
        commit = _hub_commit(repo, _hf_cache_dir())
        return f"{repo}@{commit}" if commit else repo
    if path.is_dir() and (path / "config.json").is_file():
        return "sha256:" + _hash_files(_folder_weight_files(path))
    return "sha256:" + _hash_files([path]) if path.is_file() else None


def weights_match(recorded: Any, expected: str | None) -> bool:
    """Whether a file's recorded ``weights`` is ``expected`` (``None``: anything; a bare hub id:
    any commit of that repo)."""
    if expected is None or recorded == expected:
        return True
    bare_hub_id = "@" not in expected and not expected.startswith("sha256:") and expected != "random"
    return bare_hub_id and isinstance(recorded, str) and recorded.startswith(expected + "@")


def _torch_hub_dir() -> str:
    """torch.hub's folder (``$TORCH_HOME/hub``) without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return os.path.join(os.path.expanduser(torch_home), "hub")


def load_codec(
    name: str = DEFAULT_CODEC,
    weights: str | os.PathLike = "pretrained",
    *,
    device: str | torch.device = "auto",
    bandwidth: float | None = None,
    backend: str = "transformers",
    max_chunk_seconds: float | None = 30.0,
    config_overrides: Mapping[str, Any] | None = None,
) -> Codec:
    """Build a ready-to-use :class:`Codec`.

    ``weights``: ``"pretrained"`` (the registry's hub id via ``from_pretrained``: HF cache,
    ``HF_HUB_OFFLINE`` and ``HF_HOME``/``HF_HUB_CACHE`` are honoured as set *now*), ``"random"``
    (untrained, deterministic; provenance ``"random"``), a ``save_pretrained`` folder, an original
    EnCodec ``.th`` checkpoint (converted), or another hub id (``org/name``).
    ``bandwidth`` (kbps) selects the number of codebooks (default: the registry's default).
    ``backend="encodec"`` uses Meta's package (24/48 kHz only; needs torchaudio).
    ``config_overrides`` tweak the config of random/checkpoint models (e.g. smaller test models);
    they may not change the token geometry.
    """
    if is_seanet(name):  # our own trained codec: TorchScript export, geometry from the file
        if backend == "encodec" or config_overrides:
            raise UsageError("codec seanet takes neither --backend encodec nor config overrides")
        return load_seanet(weights, device=resolve_device(device), bandwidth=bandwidth,
                           max_chunk_seconds=max_chunk_seconds)
    spec = get_spec(name)
    bw = spec.check_bandwidth(bandwidth)
    dev = resolve_device(device)
    if backend not in spec.backends:
        if backend not in ("transformers", "encodec"):
            raise UsageError(f"unknown backend {backend!r}; use 'transformers' or 'encodec'")
        raise UsageError(f"backend {backend!r} is not available for {spec.name} "
                         f"(available: {', '.join(spec.backends)})")
    if max_chunk_seconds is not None and max_chunk_seconds <= 0:
        max_chunk_seconds = None
    weights_str = os.fspath(weights) if isinstance(weights, os.PathLike) else str(weights)
    if config_overrides and not (weights_str == "random" or Path(weights_str).is_file()):
        raise UsageError("config_overrides apply to weights='random' or a checkpoint file only; "
                         "pretrained models and folders bring their own config")

    if backend == "encodec":
        if weights_str not in ("pretrained", "random") and not Path(weights_str).exists():
            raise WeightsNotFoundError(f"weights path not found: {weights_str}")
        model, weights_id = _load_meta(spec, weights_str)
    elif weights_str == "random":
        model, weights_id = _load_random(spec, config_overrides), "random"
    elif weights_str == "pretrained":
        model, weights_id = _load_pretrained(spec, spec.hub_id)
    else:
        path = Path(weights_str).expanduser()
        if path.is_dir():
            model, weights_id = _load_folder(spec, path)
        elif path.is_file():
            model, weights_id = _load_checkpoint_file(spec, path, config_overrides)
        elif _HUB_ID.match(weights_str) and not weights_str.startswith((".", "/")):
            try:
                model, weights_id = _load_pretrained(spec, weights_str)
            except WeightsNotFoundError as exc:
                raise WeightsNotFoundError(f"--weights {weights_str!r} is not a local path, and as a hub id: "
                                           f"{exc}") from exc
        else:
            raise WeightsNotFoundError(
                f"weights path not found: {path}. Pass 'pretrained', 'random', a save_pretrained "
                "folder or an EnCodec .th checkpoint")
    model.eval()
    model.to(dev)
    codec = Codec(spec, model, backend=backend, device=dev, bandwidth=bw, weights_id=weights_id,
                  max_chunk_seconds=max_chunk_seconds)
    log.info("loaded %r", codec)
    return codec
