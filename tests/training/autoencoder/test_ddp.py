"""Two gloo ranks on CPU train a tiny model a few steps (continuous and RVQ, 1ch and 32ch) and
must end with identical weights and codebooks; the RVQ commitment penalty once crashed DDP."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from training.autoencoder.config import load_config
from training.autoencoder.train import Trainer, _unwrap
from training.core.dist import DistInfo

TINY = ["model.seanet.n_filters=4", "model.seanet.dimension=8", "model.seanet.ratios=[4,2]",
        "model.seanet.lstm=0", "discriminator.filters=4", "discriminator.n_ffts=[128,64]",
        "model.rvq.n_q=3", "model.rvq.bins=16", "model.rvq.kmeans_iters=2", "train.amp=fp32"]
CASES = [("1ch", None), ("1ch", "rvq"), ("32ch", None), ("32ch", "rvq")]
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for mode, quantizer in CASES:
            torch.manual_seed(1234 + rank)  # different initial weights: DDP must broadcast rank 0's
            cfg = load_config(mode, [*TINY, f"model.quantizer={quantizer or 'null'}"])
            t = Trainer(cfg, Path(out) / f"{mode}_{quantizer}_{rank}", torch.device("cpu"),
                        DistInfo(rank, world, rank))
            gen = torch.Generator().manual_seed(rank)  # each rank its own data
            before = [p.detach().clone() for p in t.state.model.parameters()]
            for _ in range(STEPS):
                t.train_step(0.1 * torch.randn(2, int(cfg.channels), 1200, generator=gen))
            state = {k: v.detach().clone() for k, v in _unwrap(t.state.model).state_dict().items()}
            state.update({f"disc.{k}": v.detach().clone() for k, v in _unwrap(t.state.disc).state_dict().items()})
            state["trained"] = torch.tensor(any(not torch.equal(p0, p) for p0, p in
                                                zip(before, t.state.model.parameters())))
            torch.save(state, Path(out) / f"{mode}_{quantizer}_rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def test_two_ranks_hold_identical_weights(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for mode, quantizer in CASES:
        a, b = (torch.load(tmp_path / f"{mode}_{quantizer}_rank{r}.pt") for r in (0, 1))
        assert a.keys() == b.keys()
        if quantizer == "rvq":
            assert any(".embed" in k for k in a) and float(a["quantizer.layers.0.initialized"]) == 1.0
        assert bool(a["trained"]), f"{mode}/{quantizer}: the generator did not change"
        for k in a:
            assert torch.equal(a[k], b[k]), f"{mode}/{quantizer}: {k} differs between ranks"
