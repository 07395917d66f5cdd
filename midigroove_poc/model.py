"""Grid → codec-token Transformer and the dataset that feeds it from a midigroove cache.

:class:`GridToCodes`: a Transformer encoder over per-feature-scaled grid frames plus drummer/kit/
style embeddings, and one head per codebook (optionally conditioned on the lower codebooks of the
frame, ``ar_codebooks``). :class:`CacheDataset` reads a cache split straight from its Arrow table
into padded batches with a ``mask``. Architecture, ``ar_codebooks`` and scaling: README.md,
"midigroove_poc", **Model**.
"""

from __future__ import annotations

import json
import math
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.utils.data import Dataset

from midigroove_poc.cache import CacheError, load_cache
from midigroove_poc.inputs import InputSpec
from training.utils import CheckpointError, get_device
from workflow.errors import DatasetError, UsageError
from workflow.torchdata import PAD_ID

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_KINDS",
    "ModelInputError",
    "CacheFormatError",
    "GridToCodes",
    "CacheDataset",
    "PAD_ID",
    "Sampler",
    "collate",
    "load_model",
    "model_from_checkpoint_payload",
]

#: Cache column read for each ``features`` kind.
FEATURE_KINDS: dict[str, str] = {"grid": "grid", "drumgrid": "drumgrid"}
#: Cache-meta key naming the columns of each feature kind.
_FEATURE_NAME_KEYS = {"grid": "expressive_features", "drumgrid": "drum_grid_features"}
_ID_COLUMNS = ("drummer_id", "kit_id", "style_id")
MODEL_KIND = "midigroove_poc.GridToCodes"


class ModelInputError(UsageError):
    """Tensors given to :class:`GridToCodes` have the wrong shape or do not fit its config."""


class CacheFormatError(CacheError, DatasetError):
    """A midigroove cache folder is missing or unreadable, lacks a split or column, or its arrays
    do not fit together (catchable as ``midigroove_poc.cache.CacheError`` too)."""


# ---------------------------------------------------------------------------------------------
# Model


def _head(d_model: int, codebook_size: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(),
                         nn.Linear(d_model, codebook_size))


class Sampler:
    """Draws tokens from logits ``[..., V]``: softmax(logits / temperature) over the ``topk`` most
    likely tokens (0: all), with its own seeded generator (same seed, same codes on a device)."""

    def __init__(self, temperature: float = 1.0, topk: int = 0, seed: int = 0) -> None:
        if not (temperature > 0 and math.isfinite(temperature)):
            raise UsageError(f"--temperature must be a positive number, got {temperature}")
        if topk < 0:
            raise UsageError(f"--topk must be >= 0 (0 = all tokens), got {topk}")
        self.temperature, self.topk, self.seed = float(temperature), int(topk), int(seed)
        self._gen: torch.Generator | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self._gen is None or self._gen.device != logits.device:
            self._gen = torch.Generator(device=logits.device).manual_seed(self.seed)
        x = logits.float() / self.temperature
        if 0 < self.topk < x.shape[-1]:
            kth = torch.topk(x, self.topk, dim=-1).values[..., -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        probs = torch.softmax(x, dim=-1).reshape(-1, x.shape[-1])
        return torch.multinomial(probs, 1, generator=self._gen).reshape(x.shape[:-1])


class GridToCodes(nn.Module):
    """Transformer encoder over grid frames → logits ``[B, K, T, V]`` for all K codebooks.

    ``config`` (a plain dict of the constructor arguments) is what a checkpoint stores to rebuild
    the model. See the module docstring for the architecture and ``ar_codebooks``. Every pass
    takes an optional ``mask`` ``[B, T]`` (True on real frames) for batches of windows of
    different lengths; outputs at padded frames are meaningless.
    """

    def __init__(self, n_features: int, n_codebooks: int, codebook_size: int, *, n_drummers: int = 1,
                 n_kits: int = 1, n_styles: int = 1, d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 4, dropout: float = 0.1, max_frames: int = 4096,
                 ar_codebooks: bool = False) -> None:
        super().__init__()
        sizes = dict(n_features=n_features, n_codebooks=n_codebooks, codebook_size=codebook_size,
                     n_drummers=n_drummers, n_kits=n_kits, n_styles=n_styles, d_model=d_model,
                     n_layers=n_layers, n_heads=n_heads, max_frames=max_frames)
        bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or int(v) != v or int(v) < 1}
        if bad:
            raise UsageError(f"GridToCodes sizes must be integers >= 1, got {bad}")
        if d_model % n_heads:
            raise UsageError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not 0.0 <= float(dropout) < 1.0:
            raise UsageError(f"dropout must be in [0, 1), got {dropout}")
        self.config: dict[str, Any] = {k: int(v) for k, v in sizes.items()}
        self.config.update(dropout=float(dropout), ar_codebooks=bool(ar_codebooks))
        self.n_features = int(n_features)
        self.n_codebooks = int(n_codebooks)
        self.codebook_size = int(codebook_size)
        self.max_frames = int(max_frames)
        self.ar_codebooks = bool(ar_codebooks)
        d = int(d_model)

        self.register_buffer("feature_scale", torch.ones(self.n_features))
        self.input_proj = nn.Linear(self.n_features, d)
        self.pos_emb = nn.Embedding(self.max_frames, d)
        self.drummer_emb = nn.Embedding(int(n_drummers), d)
        self.kit_emb = nn.Embedding(int(n_kits), d)
        self.style_emb = nn.Embedding(int(n_styles), d)
        self.in_dropout = nn.Dropout(float(dropout))
        layer = nn.TransformerEncoderLayer(d, int(n_heads), 4 * d, float(dropout), activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, int(n_layers), norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)
        self.heads = nn.ModuleList(_head(d, self.codebook_size) for _ in range(self.n_codebooks))
        self.level_emb: nn.Embedding | None = None
        self.code_emb: nn.Embedding | None = None
        if self.ar_codebooks:
            self.level_emb = nn.Embedding(self.n_codebooks, d)
            if self.n_codebooks > 1:  # token v of codebook j < K-1 is row j * V + v
                self.code_emb = nn.Embedding((self.n_codebooks - 1) * self.codebook_size, d)
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    # -- inputs --------------------------------------------------------------------------------

    @torch.no_grad()
    def set_feature_scale(self, scale: torch.Tensor | np.ndarray | Sequence[float]) -> None:
        """Set the per-feature divisor (values <= 0 or non-finite become 1)."""
        value = torch.as_tensor(np.asarray(scale, dtype=np.float32)).reshape(-1)
        if value.numel() != self.n_features:
            raise ModelInputError(f"feature scale has {value.numel()} values, the model has "
                                  f"{self.n_features} features")
        value = torch.where(torch.isfinite(value) & (value > 0), value, torch.ones_like(value))
        self.feature_scale.copy_(value.to(self.feature_scale.device))

    def _check_inputs(self, grid: torch.Tensor, ids: Sequence[torch.Tensor],
                      codes: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        if grid.ndim != 3 or grid.shape[-1] != self.n_features:
            raise ModelInputError(f"grid must be [B, T, {self.n_features}], got {tuple(grid.shape)}")
        batch, frames = grid.shape[0], grid.shape[1]
        if frames > self.max_frames:
            raise ModelInputError(f"{frames} frames exceed the model's max_frames={self.max_frames}; "
                                  "build the model with a larger max_frames or use shorter windows")
        for name, ids_t in zip(_ID_COLUMNS, ids):
            if ids_t.shape != (batch,):
                raise ModelInputError(f"{name} must be [B]=[{batch}], got {tuple(ids_t.shape)}")
        if codes is not None and codes.shape != (batch, self.n_codebooks, frames):
            raise ModelInputError(f"codes must be [B, K, T]=[{batch}, {self.n_codebooks}, {frames}], "
                                  f"got {tuple(codes.shape)}")
        if mask is not None and mask.shape != (batch, frames):
            raise ModelInputError(f"mask must be [B, T]=[{batch}, {frames}], got {tuple(mask.shape)}")

    # -- passes --------------------------------------------------------------------------------

    def encode(self, grid: torch.Tensor, drummer_id: torch.Tensor, kit_id: torch.Tensor,
               style_id: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frame states ``h [B, T, d]`` (everything but the codebook heads)."""
        self._check_inputs(grid, (drummer_id, kit_id, style_id), None, mask)
        frames = grid.shape[1]
        x = self.input_proj(grid.float() / self.feature_scale)
        x = x + self.pos_emb(torch.arange(frames, device=grid.device))[None]
        meta = self.drummer_emb(drummer_id.long()) + self.kit_emb(kit_id.long()) + \
            self.style_emb(style_id.long())
        padding = None if mask is None else ~mask.bool()
        return self.encoder(self.in_dropout(x + meta[:, None, :]), src_key_padding_mask=padding)

    def _level_input(self, h: torch.Tensor, k: int, prev_sum: torch.Tensor | None) -> torch.Tensor:
        if self.level_emb is None:
            return h
        z = h + self.level_emb.weight[k]
        return z if prev_sum is None else z + prev_sum

    def _add_code(self, prev_sum: torch.Tensor | None, codes_k: torch.Tensor, k: int) -> torch.Tensor:
        assert self.code_emb is not None
        # padded frames carry a negative pad id: look up token 0 there (their outputs are unused)
        emb = self.code_emb(codes_k.long().clamp(min=0) + k * self.codebook_size)
        return emb if prev_sum is None else prev_sum + emb

    def head_logits(self, h: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, K, T, V]`` from frame states; with ``ar_codebooks`` the true ``codes``
        ``[B, K, T]`` condition each head on the earlier codebooks (teacher forcing)."""
        if self.code_emb is not None and codes is None:
            raise ModelInputError("ar_codebooks=True needs codes for teacher forcing; use "
                                  "predict() (greedy decoding) when the codes are unknown")
        out = []
        prev_sum = None
        for k, head in enumerate(self.heads):
            out.append(head(self._level_input(h, k, prev_sum)))
            if self.code_emb is not None and k < self.n_codebooks - 1:
                prev_sum = self._add_code(prev_sum, codes[:, k], k)  # type: ignore[index]
        return torch.stack(out, dim=1)

    def greedy(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax decoding from frame states: ``(codes long [B, K, T], logits [B, K, T, V])``,
        codebook by codebook when ``ar_codebooks``."""
        return self.decode(h)

    def decode(self, h: torch.Tensor, sampler: Sampler | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes and logits from frame states: argmax, or drawn by ``sampler``; codebook by
        codebook when ``ar_codebooks`` (each level conditioned on the codes chosen before it)."""
        pick = (lambda logits: logits.argmax(dim=-1)) if sampler is None else sampler
        if self.code_emb is None:
            logits = self.head_logits(h)
            return pick(logits), logits
        tokens, out = [], []
        prev_sum = None
        for k, head in enumerate(self.heads):
            logits_k = head(self._level_input(h, k, prev_sum))
            tok = pick(logits_k)
            out.append(logits_k)
            tokens.append(tok)
            if k < self.n_codebooks - 1:
                prev_sum = self._add_code(prev_sum, tok, k)
        return torch.stack(tokens, dim=1), torch.stack(out, dim=1)

    def forward(self, grid: torch.Tensor, drummer_id: torch.Tensor, kit_id: torch.Tensor,
                style_id: torch.Tensor, codes: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, K, T, V]``. ``codes`` ``[B, K, T]`` are the teacher-forcing targets when
        ``ar_codebooks`` (ignored otherwise); without them an AR model decodes greedily and
        returns the logits along its own predictions."""
        self._check_inputs(grid, (drummer_id, kit_id, style_id), codes, mask)
        h = self.encode(grid, drummer_id, kit_id, style_id, mask)
        if self.code_emb is not None and codes is None:
            return self.greedy(h)[1]
        return self.head_logits(h, codes)

    @torch.no_grad()
    def predict(self, grid: torch.Tensor, drummer_id: torch.Tensor, kit_id: torch.Tensor,
                style_id: torch.Tensor, mask: torch.Tensor | None = None,
                sampler: Sampler | None = None) -> torch.Tensor:
        """Most likely codes ``long [B, K, T]`` (greedy per codebook when ``ar_codebooks``), or
        codes drawn by ``sampler``. Runs in eval mode (no dropout) and restores the previous mode."""
        was_training = self.training
        self.eval()
        try:
            return self.decode(self.encode(grid, drummer_id, kit_id, style_id, mask), sampler)[0]
        finally:
            self.train(was_training)


def model_from_checkpoint_payload(payload: Mapping[str, Any], where: str = "checkpoint"
                                  ) -> tuple[GridToCodes, dict[str, Any]]:
    """Rebuild a :class:`GridToCodes` from a loaded checkpoint dict (see :func:`load_model`)."""
    meta = payload.get("metadata") or {}
    if meta.get("kind") != MODEL_KIND or "model_config" not in meta:
        raise CheckpointError(
            f"{where} is not a midigroove GridToCodes checkpoint (metadata kind "
            f"{meta.get('kind')!r}); use the .pt file written by midigroove_poc.train.train_model")
    try:
        model = GridToCodes(**dict(meta["model_config"]))
    except (TypeError, UsageError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild the model from its config "
                              f"{meta['model_config']!r}: {exc}") from exc
    try:
        model.load_state_dict(payload["model_state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: the saved weights do not fit the saved model config "
                              f"({str(exc).splitlines()[0]}); the file is damaged or was edited") from exc
    info = {
        "features": meta.get("features"),
        "config": dict(meta["model_config"]),
        "cache_meta": dict(meta.get("cache_meta") or {}),
        "cache_path": meta.get("cache_path"),
        "feature_names": list(meta.get("feature_names") or []),
        "inputs": InputSpec.from_dict(meta.get("inputs")).as_dict(),
        "train_args": dict(meta.get("train_args") or {}),
        "step": payload.get("epoch"),
        "score": payload.get("score"),
        "val_loss": (meta.get("metrics") or {}).get("val_loss"),
        "metrics": dict(meta.get("metrics") or {}),
    }
    return model, info


def _read_payload(path: Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (``weights_only=True``), or CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"model checkpoint not found: {path}; pass the save_path given to "
                              "train_model (or its <stem>_best.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError / EOFError / ...
        raise CheckpointError(f"cannot read model checkpoint {path} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); the file is "
                              "truncated, corrupt or not a torch checkpoint") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def load_model(ckpt_path: Path | str, device: str | torch.device = "cpu"
               ) -> tuple[GridToCodes, dict[str, Any]]:
    """Load a trained model (``weights_only=True``) in eval mode on ``device``.

    Accepts the final file ``train_model`` writes (``save_path``) and the ``<stem>_best.pt`` /
    ``<stem>_last.pt`` checkpoints beside it. ``info`` holds ``features`` (``"grid"`` or
    ``"drumgrid"``), ``config`` (the model constructor arguments), ``cache_meta`` (the training
    cache's ``cache_meta.json``: codec, weights, bandwidth, fps, vocabularies, ...),
    ``cache_path``, ``feature_names``, ``inputs`` (the ablations), ``train_args``,
    ``step`` (optimizer step of these weights),
    ``score`` (the monitored loss there), ``val_loss``, ``metrics`` (that evaluation), ``path``.
    """
    path = Path(ckpt_path)
    payload = _read_payload(path)
    model, info = model_from_checkpoint_payload(payload, str(path))
    dev = get_device(device)
    info["path"] = str(path)
    return model.to(dev).eval(), info


# ---------------------------------------------------------------------------------------------
# Cache access


def _read_cache(cache_path: Path | str) -> tuple[Any, dict[str, Any]]:
    """``(DatasetDict, meta)`` of a cache folder through ``midigroove_poc.cache.load_cache``."""
    path = Path(cache_path)
    try:
        return load_cache(path)
    except CacheFormatError:
        raise
    except CacheError as exc:
        raise CacheFormatError(str(exc)) from exc
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise CacheFormatError(f"cannot read the cache {path} ({type(exc).__name__}: {exc}); pass a "
                               "finished cache folder (it holds cache_meta.json and dataset_dict.json) "
                               "or rebuild it") from exc


def _ragged(arr: pa.Array, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list-of-lists column as ``(padded [N, A, B] (zeros past each length), A per row [N],
    B per inner list [sum A])``, by scattering the flat Arrow values (no Python lists)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    inner = arr.flatten()
    if arr.null_count or inner.null_count:
        raise CacheFormatError(f"column {name!r} holds null rows; rebuild the cache")
    values = inner.flatten().to_numpy(zero_copy_only=False)
    a_len = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    b_len = inner.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(arr)
    out = np.zeros((n, int(a_len.max(initial=0)), int(b_len.max(initial=0))), dtype=values.dtype)
    if values.size:
        row_of_inner = np.repeat(np.arange(n), a_len)
        a_pos = np.arange(b_len.size) - np.repeat(np.cumsum(a_len) - a_len, a_len)
        inner_of_value = np.repeat(np.arange(b_len.size), b_len)
        b_pos = np.arange(values.size) - np.repeat(np.cumsum(b_len) - b_len, b_len)
        out[row_of_inner[inner_of_value], a_pos[inner_of_value], b_pos] = values
    return out, a_len, b_len


class CacheDataset(Dataset):
    """One split of a midigroove cache as items ``{"grid": float32 [T, F], "codes": long [K, T],
    "drummer_id", "kit_id", "style_id", "index", "length"}`` (long scalars).

    ``features="grid"`` reads the expressive grid column, ``"drumgrid"`` the quantised drum grid
    (the baseline). Windows may differ in length (4 beats at each row's tempo): :meth:`batch` and
    :func:`collate` pad to the longest (grid with 0, codes with :data:`PAD_ID`) and add a
    ``mask`` (True on real frames). Rows are read from the memory-mapped Arrow table, many per
    call (``DataLoader`` uses ``__getitems__``). Picklable, so ``num_workers > 0`` works.
    """

    def __init__(self, cache_path: Path | str, split: str, features: str = "grid",
                 inputs: InputSpec | None = None) -> None:
        if features not in FEATURE_KINDS:
            raise UsageError(f"features must be one of {sorted(FEATURE_KINDS)}, got {features!r}")
        self.cache_path = Path(cache_path)
        self.split = split
        self.features = features
        self.inputs = inputs or InputSpec()  # ablations: columns dropped, kit hidden
        self.column = FEATURE_KINDS[features]
        dsd, meta = _read_cache(self.cache_path)
        self.meta: dict[str, Any] = dict(meta)
        if split not in dsd:
            raise CacheFormatError(f"cache {self.cache_path} has no split {split!r} (splits: "
                                   f"{', '.join(sorted(dsd))}); rebuild it or pick another split")
        ds = dsd[split]
        needed = [self.column, "codes", *_ID_COLUMNS]
        missing = [c for c in needed if c not in ds.column_names]
        if missing:
            raise CacheFormatError(f"cache {self.cache_path} split {split!r} lacks column(s) "
                                   f"{missing} (has {ds.column_names}); rebuild it with "
                                   "midigroove_poc's cache builder")
        self._ds = ds.with_format("arrow", columns=needed)
        self._dims: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._ds)

    @property
    def feature_names(self) -> list[str]:
        """Names of the grid columns the model sees (cache meta minus ablated; may be empty for
        foreign caches)."""
        return self.inputs.kept_names(self.all_feature_names)

    @property
    def all_feature_names(self) -> list[str]:
        """Names of every grid column of the cache (before ablations)."""
        return list(self.meta.get(_FEATURE_NAME_KEYS[self.features]) or [])

    def _column(self, name: str) -> pa.ChunkedArray:
        return self._ds[:].column(name)

    def lengths(self) -> np.ndarray:
        """Frames of every row (int64 ``[N]``), from the Arrow offsets only."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        col = self._column(self.column).combine_chunks()
        return col.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)

    @property
    def max_frames(self) -> int:
        """The longest window of the split (the cache meta's ``frames`` when it is empty)."""
        lengths = self.lengths()
        return int(lengths.max()) if lengths.size else int(self.meta.get("frames", 0))

    def _shape(self) -> tuple[int, int]:
        if self._dims is None:
            if len(self) == 0:
                self._dims = (len(self.feature_names), int(self.meta.get("num_codebooks", 0)))
            else:
                first = self.batch([0])
                self._dims = (int(first["grid"].shape[-1]), int(first["codes"].shape[1]))
        return self._dims

    @property
    def n_features(self) -> int:
        return self._shape()[0]

    @property
    def num_codebooks(self) -> int:
        return self._shape()[1]

    def batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """Padded tensors of the rows ``indices``: grid float32 ``[N, T, F]``, codes long
        ``[N, K, T]`` (:data:`PAD_ID` past each row's end), mask bool ``[N, T]``, length, ids
        and index long ``[N]`` (T = the longest of these rows)."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        n = len(self)
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise IndexError(f"index {bad[0]} out of range for split {self.split!r} of {n} rows")
        idx = [i % n for i in idx]
        table = self._ds[idx]
        grid, frames, widths = _ragged(table.column(self.column), self.column)
        codes, books, code_frames = _ragged(table.column("codes"), "codes")
        where = f"cache {self.cache_path} split {self.split!r}"
        if widths.size and (widths != widths[0]).any():
            raise CacheFormatError(f"{where}: column {self.column!r} has frames of different widths "
                                   f"({int(widths.min())}..{int(widths.max())}); rebuild the cache")
        if books.size and (books != books[0]).any():
            raise CacheFormatError(f"{where}: rows have different numbers of codebooks "
                                   f"({int(books.min())}..{int(books.max())}); rebuild the cache")
        if not np.array_equal(code_frames, np.repeat(frames, books)):
            raise CacheFormatError(f"{where}: codes and {self.column!r} disagree on the number of "
                                   "frames of some rows; rebuild the cache")
        mask = np.arange(grid.shape[1])[None, :] < frames[:, None]
        codes = codes.astype(np.int64)
        codes[~np.broadcast_to(mask[:, None, :], codes.shape)] = PAD_ID
        grid = self.inputs.select(grid, self.all_feature_names)
        out = {"grid": torch.from_numpy(grid.astype(np.float32)), "codes": torch.from_numpy(codes),
               "mask": torch.from_numpy(mask), "length": torch.from_numpy(frames)}
        for name in _ID_COLUMNS:
            out[name] = torch.from_numpy(
                table.column(name).to_numpy(zero_copy_only=False).astype(np.int64))
        out["kit_id"] = self.inputs.kit_ids(out["kit_id"])
        out["index"] = torch.as_tensor(idx, dtype=torch.long)
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        stacked = self.batch(indices)
        items = []
        for i in range(len(indices)):
            t = int(stacked["length"][i])
            items.append({"grid": stacked["grid"][i, :t], "codes": stacked["codes"][i, :, :t],
                          **{k: stacked[k][i] for k in (*_ID_COLUMNS, "index", "length")}})
        return items

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def column_range(self, name: str) -> tuple[int, int] | None:
        """``(min, max)`` of an integer column (``codes`` or an id column) over the split, computed
        by Arrow over the whole column; None for an empty split."""
        import pyarrow.compute as pc

        if len(self) == 0:
            return None
        arr = self._column(name).combine_chunks()
        while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            arr = arr.flatten()
        result = pc.min_max(arr).as_py()
        if result["min"] is None:
            return None
        return int(result["min"]), int(result["max"])

    def feature_abs_max(self, max_rows: int = 4096) -> np.ndarray:
        """Per-feature max |value| over (an evenly spaced sample of up to ``max_rows``) rows."""
        n = len(self)
        if n == 0:
            return np.ones(self.n_features, dtype=np.float32)
        rows = np.unique(np.linspace(0, n - 1, min(n, max_rows)).round().astype(np.int64))
        best = np.zeros(self.n_features, dtype=np.float32)
        for start in range(0, len(rows), 256):
            grid = self.batch(rows[start:start + 256])["grid"].numpy()
            finite = np.where(np.isfinite(grid), np.abs(grid), 0.0)
            best = np.maximum(best, finite.reshape(-1, grid.shape[-1]).max(axis=0))
        return best

    def __repr__(self) -> str:
        return (f"CacheDataset({str(self.cache_path)!r}, split={self.split!r}, "
                f"features={self.features!r}, rows={len(self)})")


def collate(items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch :class:`CacheDataset` items of any lengths: grid ``[B, T, F]`` zero-padded, codes
    ``[B, K, T]`` padded with :data:`PAD_ID`, mask ``[B, T]`` True on real frames, ids ``[B]``."""
    if not items:
        raise UsageError("collate got no items")
    lengths = torch.tensor([int(it["grid"].shape[0]) for it in items], dtype=torch.long)
    t_max = int(lengths.max())
    first = items[0]
    grid = first["grid"].new_zeros((len(items), t_max, first["grid"].shape[1]))
    codes = first["codes"].new_full((len(items), first["codes"].shape[0], t_max), PAD_ID)
    for i, it in enumerate(items):
        grid[i, : it["grid"].shape[0]] = it["grid"]
        codes[i, :, : it["codes"].shape[1]] = it["codes"]
    out = {"grid": grid, "codes": codes, "mask": torch.arange(t_max)[None] < lengths[:, None],
           "length": lengths}
    for key in (*_ID_COLUMNS, "index"):
        out[key] = torch.stack([torch.as_tensor(it[key], dtype=torch.long) for it in items])
    return out
