"""The four music models: shapes, registry, and that they learn on their synthetic data."""

from __future__ import annotations

import pytest
import torch

from training.music.data_loaders import DynamicsDataset, EmotionDataset, GrooveDataset, MelodyDataset
from training.music.models import (
    LOSSES,
    MODEL_REGISTRY,
    DynamicsEngine,
    EmotionRecognizer,
    GroovePredictor,
    MelodyTransformer,
    ModelInputError,
    ModelSpec,
    build_loss,
    build_model,
    count_parameters,
)
from workflow.errors import UsageError

NAMES = ["emotion", "melody", "dynamics", "groove"]


def test_registry_maps_names_to_model_dataset_subfolder_loss() -> None:
    assert sorted(MODEL_REGISTRY) == sorted(NAMES)
    expected = {
        "emotion": (EmotionRecognizer, EmotionDataset, "training/audio"),
        "melody": (MelodyTransformer, MelodyDataset, "training/midi"),
        "dynamics": (DynamicsEngine, DynamicsDataset, "training/maestro"),
        "groove": (GroovePredictor, GrooveDataset, "training/groove"),
    }
    for name, spec in MODEL_REGISTRY.items():
        assert isinstance(spec, ModelSpec)
        model_cls, dataset_cls, subfolder, loss = spec  # unpacks as a 4-tuple
        assert (model_cls, dataset_cls, subfolder) == expected[name]
        assert dataset_cls.SUBFOLDER == subfolder and dataset_cls.NAME == name
        assert loss in LOSSES and isinstance(build_loss(loss), torch.nn.Module)
    with pytest.raises(UsageError, match="choose from"):
        build_model("nope", 4, 2)
    with pytest.raises(UsageError, match="choose from"):
        build_loss("hinge")


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes(name: str) -> None:
    ds = MODEL_REGISTRY[name].dataset_cls.synthetic(n=8)
    model = build_model(name, ds.feature_dim, ds.target_dim).eval()
    batch = torch.utils.data.default_collate([ds[i] for i in range(5)])
    out = model(batch["features"])
    assert out.shape == (5, ds.target_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and count_parameters(model) > 0
    # other dimensions (e.g. a labelled dataset's target size) and a custom width
    other = build_model(name, ds.feature_dim, 3, hidden=32)
    assert other(batch["features"]).shape == (5, 3)
    with pytest.raises(ModelInputError, match=rf"\[batch, {ds.feature_dim}\]"):
        model(torch.zeros(2, ds.feature_dim + 1))
    with pytest.raises(ModelInputError):
        model(torch.zeros(ds.feature_dim))


def test_emotion_outputs_stay_in_unit_range() -> None:
    model = EmotionRecognizer(128, 2)
    out = model(torch.randn(16, 128) * 50)
    assert out.abs().max() <= 1.0


def test_melody_transformer_uses_pitch_identity() -> None:
    """Two distributions with the same values at different pitches must be told apart."""
    torch.manual_seed(0)
    model = MelodyTransformer(128, 4).eval()
    a, b = torch.zeros(1, 128), torch.zeros(1, 128)
    a[0, 60], b[0, 72] = 1.0, 1.0
    assert not torch.allclose(model(a), model(b))


@pytest.mark.parametrize("name,steps,batch", [("emotion", 60, 64), ("melody", 25, 32),
                                              ("dynamics", 60, 64), ("groove", 60, 64)])
def test_a_few_optimiser_steps_reduce_the_loss_on_synthetic_data(name: str, steps: int, batch: int) -> None:
    torch.manual_seed(0)
    spec = MODEL_REGISTRY[name]
    ds = spec.dataset_cls.synthetic(n=128, seed=1)
    model = build_model(name, ds.feature_dim, ds.target_dim)
    criterion = build_loss(spec.loss)
    x, y = torch.from_numpy(ds.features), torch.from_numpy(ds.targets)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def full_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = float(criterion(model(x), y))
        model.train()
        return value

    before = full_loss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(ds), (batch,), generator=gen)
        opt.zero_grad()
        loss = criterion(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    after = full_loss()
    assert after < 0.7 * before, (before, after)
