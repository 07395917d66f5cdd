"""Tests for training/core (through training.utils): real torch models, real files in tmp dirs, real trackers offline."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from training.utils import (
    BatchError,
    CheckpointError,
    CheckpointManager,
    EarlyStopping,
    ExperimentLogger,
    MetricsError,
    MetricsTracker,
    TrainingError,
    fit,
    get_device,
    seed_everything,
    split_dataset,
    train_epoch,
    validate_epoch,
)
from workflow.errors import DeviceError, UsageError

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# helpers


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def regression_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([[1.5], [-2.0], [0.5], [1.0]])
    y = x @ w + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


class DictDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[i], "target": self.y[i]}


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tmp-" in p.name]


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float((outputs - targets).abs().mean())


# ---------------------------------------------------------------------------------------------
# EarlyStopping


def test_early_stopping_min_counts_patience_and_resets_on_improvement() -> None:
    es = EarlyStopping(patience=2, min_delta=0.0, mode="min", verbose=False)
    assert es(1.0, 1) is False
    assert es(0.8, 2) is False
    assert (es.best_score, es.best_epoch, es.counter) == (0.8, 2, 0)
    assert es(0.9, 3) is False and es.counter == 1
    assert es(0.85, 4) is True and es.counter == 2
    assert es(0.5, 5) is False and es.counter == 0 and es.best_epoch == 5


def test_early_stopping_max_mode_and_min_delta() -> None:
    es = EarlyStopping(patience=2, min_delta=0.1, mode="max", verbose=False)
    es(0.50, 1)
    assert es(0.55, 2) is False and es.counter == 1  # +0.05 < min_delta: not an improvement
    assert es.best_score == 0.50
    assert es(0.70, 3) is False and es.best_epoch == 3
    es(0.75, 4)
    assert es(0.79, 5) is True


def test_early_stopping_nan_never_improves_and_epoch_defaults_to_call_count() -> None:
    es = EarlyStopping(patience=1, mode="min", verbose=False)
    es(torch.tensor(1.0))
    assert es(float("nan")) is True
    assert es.best_epoch == 1 and es.best_score == 1.0


def test_early_stopping_state_round_trip_and_mode_mismatch() -> None:
    es = EarlyStopping(patience=3, mode="min", verbose=False)
    for epoch, score in enumerate([1.0, 0.7, 0.8, 0.9], start=1):
        es(score, epoch)
    state = es.state_dict()
    restored = EarlyStopping(patience=3, mode="min", verbose=False)
    restored.load_state_dict(state)
    assert (restored.best_score, restored.best_epoch, restored.counter) == (0.7, 2, 2)
    assert restored(0.95, 5) is True  # third epoch without improvement
    with pytest.raises(CheckpointError, match="mode='min'"):
        EarlyStopping(mode="max").load_state_dict(state)
    with pytest.raises(UsageError):
        EarlyStopping(mode="lowest")


# ---------------------------------------------------------------------------------------------
# CheckpointManager


def test_best_only_writes_best_and_last(tmp_path: Path) -> None:
    model = TinyNet()
    mgr = CheckpointManager(tmp_path / "ckpt", save_best_only=True, verbose=False)
    saved = [mgr.save_checkpoint(model, e, s, model_name="net") for e, s in [(1, 1.0), (2, 0.5), (3, 0.7)]]
    assert [s.is_best for s in saved] == [True, True, False]
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["net_best.pt", "net_last.pt"]
    best = torch.load(tmp_path / "ckpt" / "net_best.pt", weights_only=True)
    last = torch.load(tmp_path / "ckpt" / "net_last.pt", weights_only=True)
    assert (best["epoch"], best["score"]) == (2, 0.5)
    assert (last["epoch"], last["best_score"]) == (3, 0.5)
    assert mgr.latest_checkpoint("net") == tmp_path / "ckpt" / "net_last.pt"
    assert mgr.latest_checkpoint("other") is None


def test_epoch_files_pruned_to_keep_last(tmp_path: Path) -> None:
    model = TinyNet()
    mgr = CheckpointManager(tmp_path, save_best_only=False, keep_last=2, verbose=False)
    for epoch in range(1, 6):
        mgr.save_checkpoint(model, epoch, 1.0 / epoch, model_name="m", mode="min")
    epochs = [e for e, _ in mgr.epoch_checkpoints("m")]
    assert epochs == [4, 5]
    assert torch.load(tmp_path / "m_epoch5.pt", weights_only=True)["epoch"] == 5
    assert torch.load(tmp_path / "m_best.pt", weights_only=True)["epoch"] == 5
    assert temp_files(tmp_path) == []
    with pytest.raises(UsageError):
        CheckpointManager(tmp_path, keep_last=0)
    with pytest.raises(UsageError):
        mgr.save_checkpoint(model, 1, 1.0, model_name="../escape")


def test_max_mode_and_none_score(tmp_path: Path) -> None:
    model = TinyNet()
    mgr = CheckpointManager(tmp_path, verbose=False)
    assert mgr.save_checkpoint(model, 1, None, mode="max").is_best is False
    assert mgr.save_checkpoint(model, 2, 0.6, mode="max").is_best is True
    assert mgr.save_checkpoint(model, 3, 0.4, mode="max").is_best is False
    assert mgr.save_checkpoint(model, 4, float("nan"), mode="max").is_best is False
    assert torch.load(tmp_path / "model_best.pt", weights_only=True)["epoch"] == 2


def test_second_manager_does_not_overwrite_a_better_best(tmp_path: Path) -> None:
    model = TinyNet()
    CheckpointManager(tmp_path, verbose=False).save_checkpoint(model, 1, 0.2)
    again = CheckpointManager(tmp_path, verbose=False)
    assert again.best_score("model") == 0.2
    assert again.save_checkpoint(model, 2, 0.3).is_best is False
    assert torch.load(tmp_path / "model_best.pt", weights_only=True)["score"] == 0.2


class FailingTensor(torch.Tensor):
    def __reduce_ex__(self, protocol: int):
        raise OSError(28, "No space left on device")


def test_failed_save_leaves_previous_best_intact_and_no_temp_files(tmp_path: Path) -> None:
    model = TinyNet()
    mgr = CheckpointManager(tmp_path, verbose=False)
    mgr.save_checkpoint(model, 1, 1.0)
    before = {k: v.clone() for k, v in torch.load(tmp_path / "model_best.pt", weights_only=True)
              ["model_state_dict"].items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    # A real failure part-way through torch.save (after the temp file exists): a tensor whose
    # serialisation raises, as a full disk or a broken storage would.
    handle = model.register_state_dict_post_hook(
        lambda module, state, prefix, meta: state.__setitem__("bad", torch.zeros(2).as_subclass(
            FailingTensor)))
    with pytest.raises(OSError, match="No space left"):
        mgr.save_checkpoint(model, 2, 0.1)
    handle.remove()
    assert temp_files(tmp_path) == []
    payload = torch.load(tmp_path / "model_best.pt", weights_only=True)
    assert payload["epoch"] == 1
    for key, value in before.items():
        assert torch.equal(payload["model_state_dict"][key], value)
    assert mgr.best_score("model") == 1.0  # the failed save did not claim the new score


def test_kill_during_save_keeps_best_loadable(tmp_path: Path) -> None:
    script = tmp_path / "kill_save.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        import torch
        from training.utils import CheckpointManager

        class Killer(torch.Tensor):
            def __reduce_ex__(self, protocol):
                os.kill(os.getpid(), signal.SIGKILL)

        model = torch.nn.Linear(3, 1)
        mgr = CheckpointManager(sys.argv[1], verbose=False)
        mgr.save_checkpoint(model, 1, 1.0)
        with torch.no_grad():
            model.weight.fill_(7.0)
        model.register_state_dict_post_hook(lambda m, sd, p, meta: sd.__setitem__("k", torch.zeros(1).as_subclass(Killer)))
        mgr.save_checkpoint(model, 2, 0.5)
    """))
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), str(ckpt)], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    model = nn.Linear(3, 1)
    info = CheckpointManager(ckpt, verbose=False).load_checkpoint(model, ckpt / "model_best.pt")
    assert info["epoch"] == 1
    assert not torch.all(model.weight == 7.0)
    assert CheckpointManager(ckpt).latest_checkpoint("model") == ckpt / "model_last.pt"
    # the kill hit mid-write (its temp file is left), and that file is hidden and never
    # mistaken for a checkpoint
    leftovers = temp_files(ckpt)
    assert leftovers and all(p.name.startswith(".") for p in leftovers)
    assert CheckpointManager(ckpt).cleanup_temp_files("other") == []
    assert sorted(CheckpointManager(ckpt).cleanup_temp_files("model")) == sorted(leftovers)
    assert temp_files(ckpt) == []


def test_weights_only_load_and_metadata_conversion(tmp_path: Path) -> None:
    model = TinyNet()
    mgr = CheckpointManager(tmp_path, verbose=False)
    meta = {"data": tmp_path / "x.wav", "sr": np.int64(24000), "gain": np.float32(0.5),
            "sizes": (1, 2), "table": np.arange(3)}
    mgr.save_checkpoint(model, 1, 0.5, metadata=meta)
    payload = torch.load(tmp_path / "model_best.pt", weights_only=True)
    assert payload["metadata"]["data"] == str(tmp_path / "x.wav")
    assert payload["metadata"]["sr"] == 24000 and payload["metadata"]["sizes"] == (1, 2)
    assert torch.equal(payload["metadata"]["table"], torch.arange(3))
    with pytest.raises(CheckpointError, match=r"metadata\['bad'\]"):
        mgr.save_checkpoint(model, 2, 0.1, metadata={"bad": object()})
    assert torch.load(tmp_path / "model_best.pt", weights_only=True)["epoch"] == 1


class WarmupWithConfig:
    """A LambdaLR factor as a callable object holding a non-plain attribute."""

    def __init__(self) -> None:
        self.cfg = DictDataset(torch.zeros(1), torch.zeros(1))

    def __call__(self, step: int) -> float:
        return 1.0


def test_state_a_weights_only_load_would_refuse_is_rejected_at_save(tmp_path: Path) -> None:
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupWithConfig())
    mgr = CheckpointManager(tmp_path, verbose=False)
    with pytest.raises(CheckpointError, match=r"scheduler_state_dict\['lr_lambdas'\]\[0\]\['cfg'\]"):
        mgr.save_checkpoint(model, 1, 1.0, opt, scheduler=sched)
    assert list(tmp_path.iterdir()) == []


def test_resume_restores_model_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = regression_data(16)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
    es = EarlyStopping(patience=5, verbose=False)
    es(0.3, 3)
    mgr = CheckpointManager(tmp_path, verbose=False)
    mgr.save_checkpoint(model, 3, 0.3, opt, scheduler=sched, early_stopping=es)
    after_save = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    seed_everything(123)  # scramble every RNG
    model2 = TinyNet()
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.01)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    es2 = EarlyStopping(patience=5, verbose=False)
    info = mgr.load_checkpoint(model2, mgr.latest_checkpoint("model"), opt2, sched2, es2)
    after_load = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    assert info["epoch"] == 3 and info["score"] == 0.3
    assert torch.equal(after_save[0], after_load[0])
    np.testing.assert_array_equal(after_save[1], after_load[1])
    assert after_save[2] == after_load[2]
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["exp_avg"], opt2.state[q]["exp_avg"])
        assert torch.equal(opt.state[p]["exp_avg_sq"], opt2.state[q]["exp_avg_sq"])
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == pytest.approx(0.01 / 8)
    assert (es2.best_score, es2.best_epoch) == (0.3, 3)


def test_mps_rng_state_goes_into_the_checkpoint_and_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # No Apple GPU here: stand in for MPS's generator so the payload path is exercised for real.
    mps_state = torch.arange(16, dtype=torch.uint8)
    restored: list[torch.Tensor] = []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda *a, **k: mps_state.clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda s, *a, **k: restored.append(s))
    model = TinyNet()
    mgr = CheckpointManager(tmp_path, verbose=False)
    mgr.save_checkpoint(model, 1, 0.5)
    path = mgr.latest_checkpoint("model")
    payload = torch.load(path, weights_only=True)
    assert torch.equal(payload["rng_state"]["mps"], mps_state)
    mgr.load_checkpoint(TinyNet(), path)
    assert len(restored) == 1 and torch.equal(restored[0], mps_state)

    monkeypatch.undo()  # the real machine: no MPS, so the saved state cannot be restored, and says so
    with caplog.at_level(logging.WARNING, logger="training.core.seed"):
        mgr.load_checkpoint(TinyNet(), path)
    assert len(restored) == 1
    assert "MPS (Apple GPU) RNG state but MPS is not available" in caplog.text


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, verbose=False)
    model = TinyNet()
    with pytest.raises(CheckpointError, match="not found.*missing.pt"):
        mgr.load_checkpoint(model, tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        mgr.load_checkpoint(model, corrupt)
    mgr.save_checkpoint(model, 1, 1.0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "model_last.pt").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        mgr.load_checkpoint(model, truncated)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model_state_dict": model.state_dict(), "cfg": DictDataset(torch.zeros(1), torch.zeros(1))},
               pickled)
    with pytest.raises(CheckpointError, match="weights_only"):
        mgr.load_checkpoint(model, pickled)
    with pytest.raises(CheckpointError, match="does not match the model"):
        mgr.load_checkpoint(nn.Linear(4, 1), tmp_path / "model_last.pt")
    mgr.save_checkpoint(model, 2, 1.0, optimizer=torch.optim.Adam(model.parameters()))
    with pytest.raises(CheckpointError, match="optimizer"):
        mgr.load_checkpoint(model, tmp_path / "model_last.pt",
                            optimizer=torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))


def test_load_accepts_a_bare_state_dict(tmp_path: Path) -> None:
    src, dst = TinyNet(), TinyNet()
    torch.save(src.state_dict(), tmp_path / "bare.pt")
    info = CheckpointManager(tmp_path, verbose=False).load_checkpoint(dst, tmp_path / "bare.pt")
    assert info["epoch"] is None
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


# ---------------------------------------------------------------------------------------------
# MetricsTracker


def test_metrics_tracker_weighted_averages_and_history() -> None:
    t = MetricsTracker()
    t.update({"loss": 1.0, "acc": torch.tensor(0.5)}, n=1)
    t.update({"loss": 4.0}, n=3)
    stats = t.end_epoch()
    assert stats == {"loss": pytest.approx(3.25), "acc": pytest.approx(0.5)}
    t.update({"loss": 2.0})
    t.end_epoch()
    assert t.get_history("loss") == [pytest.approx(3.25), 2.0]
    assert t.get_epochs("acc") == [1] and t.get_epochs("loss") == [1, 2]
    assert t.get_latest("loss") == 2.0 and t.get_latest("nope") is None
    assert t.get_history("nope") == []
    assert t.best("loss") == (2, 2.0)
    with pytest.raises(MetricsError):
        t.update({"loss": "high"})


def test_metrics_json_round_trip_and_png(tmp_path: Path) -> None:
    t = MetricsTracker()
    for epoch, (a, b) in enumerate([(1.0, 2.0), (0.5, float("nan")), (0.25, 1.0)], start=1):
        t.update({"train_loss": a, "val_loss": b})
        t.end_epoch(epoch)
    path = t.save_to_json(tmp_path / "m" / "metrics.json")
    doc = json.loads(path.read_text())  # strict JSON: NaN stored as null
    assert doc["history"]["val_loss"][1] is None
    back = MetricsTracker.load_from_json(path)
    assert back.get_history("train_loss") == [1.0, 0.5, 0.25]
    assert math.isnan(back.get_history("val_loss")[1])
    assert back.last_epoch == 3
    back.update({"train_loss": 0.1})
    assert back.end_epoch() == {"train_loss": 0.1} and back.get_epochs("train_loss")[-1] == 4

    png = t.plot_metrics(["train_loss", "val_loss"], save_path=tmp_path / "plot.png")
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100
    assert temp_files(tmp_path) == []
    with pytest.raises(MetricsError, match="recorded metrics"):
        t.plot_metrics(["nope"], save_path=tmp_path / "x.png")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MetricsError, match="bad.json"):
        MetricsTracker.load_from_json(tmp_path / "bad.json")


# ---------------------------------------------------------------------------------------------
# train_epoch / validate_epoch


class RecordingSGD(torch.optim.SGD):
    """SGD that records the total gradient norm it is asked to apply."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.norms: list[float] = []

    def step(self, closure=None):  # type: ignore[override]
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


def test_train_and_validate_reduce_loss_with_tuple_batches() -> None:
    torch.manual_seed(0)
    x, y = regression_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    before = validate_epoch(model, loader, nn.MSELoss(), CPU, metrics={"mae": mae}, progress=False)
    losses = [train_epoch(model, loader, nn.MSELoss(), opt, CPU, progress=False)["train_loss"]
              for _ in range(8)]
    after = validate_epoch(model, loader, nn.MSELoss(), CPU, metrics={"mae": mae}, progress=False)
    assert set(before) == {"val_loss", "val_mae"}
    assert losses[-1] < losses[0] * 0.5
    assert after["val_loss"] < before["val_loss"] * 0.5 and after["val_mae"] < before["val_mae"]


def test_dict_batches_match_tuple_batches() -> None:
    x, y = regression_data(32)
    results = []
    for dataset in (TensorDataset(x, y), DictDataset(x, y)):
        torch.manual_seed(1)
        model = TinyNet()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        loader = DataLoader(dataset, batch_size=8)
        results.append(train_epoch(model, loader, nn.MSELoss(), opt, CPU, metrics={"mae": mae},
                                   progress=False))
    assert results[0] == pytest.approx(results[1])
    assert set(results[0]) == {"train_loss", "train_mae", "train_grad_norm"}


def test_grad_clipping_bounds_the_applied_gradient_norm() -> None:
    torch.manual_seed(0)
    x, y = regression_data(32)
    loader = DataLoader(TensorDataset(x, 100 * y), batch_size=8)  # huge targets → huge grads
    model = TinyNet()
    opt = RecordingSGD(model.parameters(), lr=1e-4)
    stats = train_epoch(model, loader, nn.MSELoss(), opt, CPU, grad_clip=0.5, progress=False)
    assert len(opt.norms) == 4 and max(opt.norms) <= 0.5 + 1e-4
    assert stats["train_grad_norm"] > 0.5  # the reported norm is the pre-clip one
    opt_free = RecordingSGD(model.parameters(), lr=1e-4)
    train_epoch(model, loader, nn.MSELoss(), opt_free, CPU, grad_clip=None, progress=False)
    assert max(opt_free.norms) > 0.5


def test_loop_errors_and_modes() -> None:
    x, y = regression_data(8)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    empty = DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4)
    with pytest.raises(BatchError, match="empty"):
        train_epoch(model, empty, nn.MSELoss(), opt, CPU, progress=False)
    with pytest.raises(BatchError, match="empty"):
        validate_epoch(model, DataLoader(TensorDataset(x[:3], y[:3]), batch_size=4, drop_last=True),
                       nn.MSELoss(), CPU, progress=False)
    triples = DataLoader(TensorDataset(x, y, y), batch_size=4)
    with pytest.raises(BatchError, match="batch_fn"):
        train_epoch(model, triples, nn.MSELoss(), opt, CPU, progress=False)
    stats = train_epoch(model, triples, nn.MSELoss(), opt, CPU, progress=False,
                        batch_fn=lambda b, d: (b[0].to(d), b[2].to(d)))
    assert math.isfinite(stats["train_loss"])
    with pytest.raises(BatchError, match="scalar"):
        train_epoch(model, DataLoader(TensorDataset(x, y), batch_size=4),
                    nn.MSELoss(reduction="none"), opt, CPU, progress=False)
    bad = DataLoader(TensorDataset(x.clone().fill_(float("nan")), y), batch_size=4)
    with pytest.raises(TrainingError, match="nan"):
        train_epoch(model, bad, nn.MSELoss(), opt, CPU, progress=False)
    model.train()
    validate_epoch(model, DataLoader(TensorDataset(x, y), batch_size=4), nn.MSELoss(), CPU,
                   progress=False)
    assert model.training  # mode restored


def test_amp_is_off_on_cpu_and_dict_losses_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    x, _ = regression_data(8)
    model = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 4))  # an autoencoder: tensor batches
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def criterion(out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        rec = nn.functional.mse_loss(out, target)
        return {"loss": rec, "rec": rec.detach()}

    with caplog.at_level(logging.WARNING, logger="training.core.loop"):
        stats = train_epoch(model, DataLoader(x, batch_size=4), criterion, opt, CPU, amp=True,
                            progress=False)
    assert "only used on CUDA" in caplog.text
    assert stats["train_rec"] == pytest.approx(stats["train_loss"])


# ---------------------------------------------------------------------------------------------
# split, device, seeds


def test_split_dataset_is_deterministic_and_non_empty() -> None:
    data = TensorDataset(torch.arange(50))
    a_train, a_val = split_dataset(data, 0.2, seed=7)
    b_train, b_val = split_dataset(data, 0.2, seed=7)
    c_train, c_val = split_dataset(data, 0.2, seed=8)
    assert a_val.indices == b_val.indices and a_train.indices == b_train.indices
    assert a_val.indices != c_val.indices
    assert len(a_val) == 10 and len(a_train) == 40
    assert sorted(a_train.indices + a_val.indices) == list(range(50))
    tiny_train, tiny_val = split_dataset(TensorDataset(torch.arange(2)), 0.01)
    assert len(tiny_train) == 1 and len(tiny_val) == 1
    _, tail = split_dataset(data, 5, shuffle=False)
    assert tail.indices == [45, 46, 47, 48, 49]
    with pytest.raises(UsageError, match="at least 2"):
        split_dataset(TensorDataset(torch.arange(1)))
    with pytest.raises(UsageError):
        split_dataset(data, 1.5)


def test_get_device_and_seed() -> None:
    assert get_device("cpu") == CPU
    assert get_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            get_device("cuda")
        with pytest.raises(DeviceError):
            get_device("cuda:1")
    if not (torch.backends.mps.is_available()):
        with pytest.raises(DeviceError, match="MPS"):
            get_device("mps")
    with pytest.raises(UsageError, match="unknown device"):
        get_device("tpu")
    seed_everything(5)
    first = (torch.rand(2), np.random.rand(), random.random())
    seed_everything(5)
    assert torch.equal(first[0], torch.rand(2)) and first[1:] == (np.random.rand(), random.random())


# ---------------------------------------------------------------------------------------------
# ExperimentLogger


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def test_logger_none_and_unknown_backend(tmp_path: Path) -> None:
    with ExperimentLogger("none", log_dir=tmp_path / "runs") as lg:
        lg.log({"loss": 1.0}, step=1)
        assert lg.backend == "none"
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UsageError, match="unknown logging backend"):
        ExperimentLogger("mlflow", log_dir=tmp_path)


def test_logger_tensorboard_writes_event_file(tmp_path: Path) -> None:
    with ExperimentLogger("tensorboard", log_dir=tmp_path / "tb", run_name="r1",
                          config={"lr": 0.1, "path": tmp_path}) as lg:
        assert lg.backend == "tensorboard"
        lg.log({"train_loss": 1.0, "val_loss": torch.tensor(0.5), "note": "skipped"}, step=1)
        lg.log({"train_loss": 0.5}, step=2)
    events = list((tmp_path / "tb" / "r1").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "r1"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train_loss")] == [1.0, 0.5]


def test_logger_tensorboard_failure_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the log folder should be")
    with caplog.at_level(logging.WARNING, logger="training.core.logger"):
        lg = ExperimentLogger("tensorboard", log_dir=blocker, run_name="r")
    assert lg.backend == "none" and "falls back to 'none'" in caplog.text
    lg.log({"loss": 1.0}, step=1)
    lg.finish()


def test_logger_wandb_offline_creates_run_dir(offline_wandb: Path) -> None:
    log_dir = offline_wandb / "logs"
    with ExperimentLogger("wandb", log_dir=log_dir, project="p", run_name="w1", config={"a": 1}) as lg:
        assert lg.backend == "wandb"
        lg.log({"loss": 1.0}, step=1)
        lg.log({"loss": 0.5}, step=2)
    runs = list((log_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert lg.run_dir == runs[0]


def test_logger_wandb_failure_falls_back(offline_wandb: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WANDB_MODE", "not-a-mode")  # wandb.init raises on it
    with caplog.at_level(logging.WARNING, logger="training.core.logger"):
        with ExperimentLogger("wandb", log_dir=offline_wandb / "logs") as lg:
            lg.log({"loss": 1.0}, step=1)
    assert lg.backend == "none"
    assert "wandb could not start" in caplog.text


def test_logger_auto_prefers_configured_wandb_else_tensorboard(offline_wandb: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with ExperimentLogger("auto", log_dir=offline_wandb / "a") as lg:
        assert lg.backend == "wandb"
    monkeypatch.delenv("WANDB_MODE")
    with ExperimentLogger("auto", log_dir=offline_wandb / "b", run_name="r") as lg:
        assert lg.backend == "tensorboard"


# ---------------------------------------------------------------------------------------------
# fit


def _fit_setup(seed: int = 0):
    seed_everything(seed)
    x, y = regression_data(48)
    train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x[40:], y[40:]), batch_size=8)
    model = TinyNet(dropout=0.2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched, train, val


def _run_fit(ckpt: Path, epochs: int, resume: bool, model=None, opt=None, sched=None, loaders=None):
    if model is None:
        model, opt, sched, train, val = _fit_setup()
    else:
        train, val = loaders
    history = fit(model, train, val, nn.MSELoss(), opt, epochs=epochs, device="cpu",
                  checkpoint_manager=CheckpointManager(ckpt, save_best_only=False, keep_last=2,
                                                       verbose=False),
                  early_stopping=EarlyStopping(patience=10, verbose=False),
                  metrics_tracker=MetricsTracker(), scheduler=sched, resume=resume,
                  model_name="tiny", metrics={"mae": mae}, progress=False)
    return model, opt, history


def test_fit_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    full_model, full_opt, full = _run_fit(tmp_path / "full", 4, resume=False)

    _run_fit(tmp_path / "split", 2, resume=False)
    # a fresh process would rebuild everything (and its RNG) before resuming
    model, opt, sched, train, val = _fit_setup(seed=999)
    resumed_model, resumed_opt, resumed = _run_fit(tmp_path / "split", 4, resume=True, model=model,
                                                   opt=opt, sched=sched, loaders=(train, val))
    assert resumed.start_epoch == 3 and resumed.epochs == [1, 2, 3, 4]
    assert dict(resumed) == dict(full)
    for p, q in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)
    assert resumed_opt.param_groups[0]["lr"] == full_opt.param_groups[0]["lr"]
    assert set(full) >= {"train_loss", "val_loss", "val_mae", "lr", "train_grad_norm"}
    assert full["lr"] == [0.01, 0.01, 0.005, 0.005]
    assert full["val_loss"][-1] < full["val_loss"][0]

    ckpt = tmp_path / "split"
    assert sorted(p.name for p in ckpt.iterdir() if not p.name.startswith(".")) == [
        "tiny_best.pt", "tiny_epoch3.pt", "tiny_epoch4.pt", "tiny_last.pt",
        "tiny_metrics.json", "tiny_metrics.png"]
    assert MetricsTracker.load_from_json(ckpt / "tiny_metrics.json").get_history("val_loss") == \
        resumed["val_loss"]
    assert resumed.best_epoch == int(np.argmin(resumed["val_loss"])) + 1
    assert torch.load(ckpt / "tiny_best.pt", weights_only=True)["epoch"] == resumed.best_epoch

    # a finished run resumed with the same epochs has nothing to do
    _, _, again = _run_fit(ckpt, 4, resume=True)
    assert again.start_epoch == 5 and dict(again) == dict(full)


def test_fit_refuses_existing_run_without_resume_or_overwrite(tmp_path: Path) -> None:
    _run_fit(tmp_path, 1, resume=False)
    with pytest.raises(CheckpointError, match="resume=True"):
        _run_fit(tmp_path, 1, resume=False)
    model, opt, sched, train, val = _fit_setup()
    history = fit(model, train, val, nn.MSELoss(), opt, epochs=1, device="cpu",
                  checkpoint_manager=CheckpointManager(tmp_path, verbose=False), overwrite=True,
                  model_name="tiny", progress=False)
    assert history.start_epoch == 1 and len(history["train_loss"]) == 1


def test_fit_early_stops_and_logs(tmp_path: Path) -> None:
    model, _, _, train, val = _fit_setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # never improves
    with ExperimentLogger("tensorboard", log_dir=tmp_path / "tb", run_name="r") as lg:
        history = fit(model, train, val, nn.MSELoss(), opt, epochs=10, device="cpu",
                      early_stopping=EarlyStopping(patience=2, min_delta=0.0, verbose=False),
                      logger=lg, progress=False, restore_best=True)
    assert history.stopped_early and history.last_epoch == 3
    assert history.best_checkpoint is None
    assert list((tmp_path / "tb" / "r").glob("events.out.tfevents.*"))


def test_fit_without_validation_monitors_train_loss_with_plateau_scheduler(tmp_path: Path) -> None:
    model, opt, _, train, _ = _fit_setup()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    history = fit(model, train, None, nn.MSELoss(), opt, epochs=3, device="cpu", scheduler=sched,
                  checkpoint_manager=CheckpointManager(tmp_path, verbose=False), progress=False)
    assert history.monitor == "train_loss" and "val_loss" not in history
    best = torch.load(tmp_path / "model_best.pt", weights_only=True)
    assert best["score"] == min(history["train_loss"]) and best["epoch"] == history.best_epoch
    with pytest.raises(UsageError, match="monitor"):
        fit(TinyNet(), train, None, nn.MSELoss(), torch.optim.SGD(TinyNet().parameters(), lr=0.1),
            epochs=1, device="cpu", monitor="accuracy", progress=False)


# ---------------------------------------------------------------------------------------------
# the training/core package behind training.utils


def test_training_utils_reexports_training_core_and_errors_are_training_own() -> None:
    import training.core as core
    import training.utils as utils
    from training.core.errors import reports_training_errors
    from workflow.errors import WorkflowError

    assert all(getattr(utils, name) is getattr(core, name) for name in utils.__all__)
    assert issubclass(CheckpointError, TrainingError) and not issubclass(TrainingError, WorkflowError)

    def failing(argv: list[str] | None) -> int:
        raise CheckpointError("run folder in use")

    from workflow.runner import run_cli
    assert run_cli(reports_training_errors(failing), []) == 1


def test_amp_policy_auto_is_fp16_on_cuda_and_off_on_cpu() -> None:
    from training.core.loop import _resolve_amp

    cuda = torch.device("cuda")  # only the device type is consulted for these values
    assert _resolve_amp(None, cuda) == torch.float16 and _resolve_amp(True, cuda) == torch.float16
    assert _resolve_amp("fp16", cuda) == torch.float16 and _resolve_amp(False, cuda) is None
    assert _resolve_amp(None, CPU) is None and _resolve_amp(False, CPU) is None
    with pytest.raises(UsageError, match="amp must be"):
        _resolve_amp("int8", CPU)
