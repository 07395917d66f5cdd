"""The four small music models and the registry that ``train_all_models`` loops over.

Every model maps ``features [B, F]`` (float32) to ``[B, Y]`` and is built as
``Model(input_dim, output_dim, hidden=...)`` with the dimensions taken from the dataset, because Y
depends on its mode (labels or continuation). The continuation models have a linear skip path so
they start from "the second half resembles the first". Architectures and the registry's use:
README.md, "The music-model suite", **Models**.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from workflow.errors import UsageError, WorkflowError

from .datasets import DynamicsDataset, EmotionDataset, GrooveDataset, MelodyDataset, MusicDataset

__all__ = [
    "MusicModelInputError",
    "ModelInputError",
    "EmotionRecognizer",
    "MelodyTransformer",
    "DynamicsEngine",
    "GroovePredictor",
    "ModelSpec",
    "MODEL_REGISTRY",
    "LOSSES",
    "build_model",
    "build_loss",
    "count_parameters",
]


class MusicModelInputError(WorkflowError, ValueError):
    """A batch does not have the shape ``[B, input_dim]`` the model was built for."""


#: The old name, kept for imports; ``midigroove_poc.model.ModelInputError`` is a different class.
ModelInputError = MusicModelInputError


def _check_input(x: torch.Tensor, input_dim: int, model: str) -> None:
    if x.dim() != 2 or x.shape[1] != input_dim:
        raise MusicModelInputError(
            f"{model} expects features shaped [batch, {input_dim}], got {tuple(x.shape)}; "
            "build the model with input_dim = dataset.feature_dim"
        )


def _check_dims(input_dim: int, output_dim: int, hidden: int) -> None:
    for name, v in (("input_dim", input_dim), ("output_dim", output_dim), ("hidden", hidden)):
        if int(v) < 1:
            raise UsageError(f"{name} must be >= 1, got {v}")


def _mlp(input_dim: int, hidden: int, output_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(input_dim, hidden), nn.GELU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
        nn.Linear(hidden, output_dim),
    )


class EmotionRecognizer(nn.Module):
    """Time-averaged mel spectrum (128) → (valence, arousal) in [-1, 1] (tanh output)."""

    def __init__(self, input_dim: int = 128, output_dim: int = 2, hidden: int = 128, *, dropout: float = 0.1) -> None:
        super().__init__()
        _check_dims(input_dim, output_dim, hidden)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.net = _mlp(self.input_dim, int(hidden), self.output_dim, dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_input(features, self.input_dim, type(self).__name__)
        return torch.tanh(self.net(features))


class MelodyTransformer(nn.Module):
    """A pitch distribution (128) read as a sequence of pitch tokens → emotion embedding or next
    distribution.

    Token ``p`` = ``pitch_embedding[p] + value_proj(log1p(F * x_p))`` (so a uniform distribution
    gives value log 2 everywhere, and spikes stay bounded). A pre-norm ``nn.TransformerEncoder``
    (``layers`` × ``heads``, width ``hidden``, feed-forward ``2 * hidden``) mixes the tokens; the
    mean over tokens and the x-weighted mean are concatenated and mapped to ``output_dim`` by a
    two-layer head. Inputs should be non-negative (negative values are clamped to 0).
    """

    def __init__(
        self,
        input_dim: int = 128,
        output_dim: int = 64,
        hidden: int = 64,
        *,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_dims(input_dim, output_dim, hidden)
        if hidden % heads:
            raise UsageError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.pitch_embedding = nn.Embedding(self.input_dim, hidden)
        self.value_proj = nn.Linear(1, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, self.output_dim))
        nn.init.normal_(self.pitch_embedding.weight, std=0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_input(features, self.input_dim, type(self).__name__)
        x = features.clamp_min(0.0)
        values = torch.log1p(x * self.input_dim).unsqueeze(-1)  # [B, F, 1]
        tokens = self.pitch_embedding.weight.unsqueeze(0) + self.value_proj(values)  # [B, F, H]
        h = self.norm(self.encoder(tokens))
        w = x / x.sum(dim=1, keepdim=True).clamp_min(1e-8)
        pooled = torch.cat([h.mean(dim=1), torch.einsum("bf,bfh->bh", w, h)], dim=-1)
        return self.head(pooled)


class _SkipMLP(nn.Module):
    """MLP plus a linear skip path: a linear fit that the MLP corrects."""

    def __init__(self, input_dim: int, output_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        _check_dims(input_dim, output_dim, hidden)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.net = _mlp(self.input_dim, int(hidden), self.output_dim, dropout)
        self.skip = nn.Linear(self.input_dim, self.output_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_input(features, self.input_dim, type(self).__name__)
        return self.net(features) + self.skip(features)


class DynamicsEngine(_SkipMLP):
    """16 dynamics features → Y (the second half's 16 in continuation mode)."""

    def __init__(self, input_dim: int = 16, output_dim: int = 16, hidden: int = 64, *, dropout: float = 0.1) -> None:
        super().__init__(input_dim, output_dim, hidden, dropout)


class GroovePredictor(_SkipMLP):
    """32 groove features → Y (drum_labels.json values, or the second half's 32)."""

    def __init__(self, input_dim: int = 32, output_dim: int = 32, hidden: int = 128, *, dropout: float = 0.1) -> None:
        super().__init__(input_dim, output_dim, hidden, dropout)


class ModelSpec(NamedTuple):
    """What ``train_all_models`` needs per model name (unpacks as a 4-tuple)."""

    model_cls: type[nn.Module]
    dataset_cls: type[MusicDataset]
    subfolder: str  # relative to --datasets-dir
    loss: str  # a key of LOSSES


#: name → (model class, dataset class, subfolder under --datasets-dir, default loss name)
MODEL_REGISTRY: dict[str, ModelSpec] = {
    "emotion": ModelSpec(EmotionRecognizer, EmotionDataset, EmotionDataset.SUBFOLDER, "mse"),
    "melody": ModelSpec(MelodyTransformer, MelodyDataset, MelodyDataset.SUBFOLDER, "mse"),
    "dynamics": ModelSpec(DynamicsEngine, DynamicsDataset, DynamicsDataset.SUBFOLDER, "mse"),
    "groove": ModelSpec(GroovePredictor, GrooveDataset, GrooveDataset.SUBFOLDER, "mse"),
}

#: loss name → factory
LOSSES: dict[str, type[nn.Module]] = {"mse": nn.MSELoss, "smooth_l1": nn.SmoothL1Loss, "l1": nn.L1Loss}


def _spec(name: str) -> ModelSpec:
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose from {sorted(MODEL_REGISTRY)}") from None


def build_model(name: str, input_dim: int, output_dim: int, **kwargs: Any) -> nn.Module:
    """Instantiate the registered model ``name`` (extra keyword arguments go to its constructor)."""
    return _spec(name).model_cls(int(input_dim), int(output_dim), **kwargs)


def build_loss(name: str) -> nn.Module:
    """A loss module by name (``mse``, ``smooth_l1``, ``l1``)."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise UsageError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))

