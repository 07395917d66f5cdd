"""EnCodec's loss balancer: loss weights become shares of the gradient, whatever each loss's scale.

Each loss's gradient on the decoded audio is taken separately, normalised by an EMA of its norm
and weighted by ``λ_i / Σ_j λ_j`` (Défossez et al., 2022, §3.4), so a loss with a large raw
gradient cannot drown the others and λ need no re-tuning when a loss changes scale. The EMA is
training state (save :meth:`state_dict`). Formula, EMA and DDP details: README.md, "SEANet
autoencoder with MS-STFT GAN", **Balancer**.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from training.utils import TrainingError

__all__ = ["Balancer", "BalancerError", "NonFiniteGradientError"]

log = logging.getLogger(__name__)

_STATE_FORMAT = "enc-hf-workflow.balancer"
_STATE_VERSION = 1


class BalancerError(TrainingError, ValueError):
    """The balancer was misconfigured or given losses it cannot balance (unknown name, no path to the input)."""


class NonFiniteGradientError(BalancerError):
    """A loss's gradient w.r.t. the input is NaN or Inf; raised before any state changes, so the step can be skipped."""


def _distributed_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _single_backward(input: torch.Tensor, grad: torch.Tensor, extra: torch.Tensor | None) -> None:
    """``grad`` into ``input`` and ``extra`` (a scalar loss, unweighted) in one backward pass."""
    if extra is not None and extra.requires_grad:
        ones = torch.ones((), dtype=extra.dtype, device=extra.device)
        torch.autograd.backward([input, extra.reshape(())], [grad, ones])
    else:
        input.backward(grad)


class Balancer:
    """Combine several losses of one tensor so each gets the gradient share its weight asks for.

    Usage (generator step)::

        balancer = Balancer({"l1": 0.1, "mel": 1.0, "adv": 3.0, "feat": 3.0})
        y_hat, commit = model(x)
        losses = {"l1": l1_time(y_hat, x), "mel": mel(y_hat, x), "adv": ..., "feat": ...}
        total = balancer.backward(losses, y_hat, extra=commit)  # one backward pass (DDP-safe); frees
        optimizer.step()                                         # the graph; fills .grad; returns Σ losses
    """

    def __init__(self, weights: Mapping[str, float], balance_grads: bool = True, total_norm: float = 1.0,
                 ema_decay: float = 0.999, per_batch_item: bool = True, epsilon: float = 1e-12,
                 monitor: bool = False) -> None:
        bad = {k: v for k, v in weights.items() if not (math.isfinite(float(v)) and float(v) >= 0.0)}
        if bad:
            raise BalancerError(f"balancer weights must be finite and >= 0, got {bad}")
        if not math.isfinite(total_norm) or total_norm <= 0:
            raise BalancerError(f"total_norm must be > 0, got {total_norm}")
        if not 0.0 <= ema_decay <= 1.0:
            raise BalancerError(f"ema_decay must be in [0, 1], got {ema_decay}")
        self.weights: dict[str, float] = {str(k): float(v) for k, v in weights.items()}
        self.balance_grads = balance_grads
        self.total_norm = float(total_norm)
        self.ema_decay = float(ema_decay)
        self.per_batch_item = per_batch_item
        self.epsilon = float(epsilon)
        self.monitor = monitor
        # Bias-corrected EMA: _ema_sum / _ema_count is the average norm.
        self._ema_sum: dict[str, float] = {}
        self._ema_count: dict[str, float] = {}
        self._metrics: dict[str, float] = {}

    def __repr__(self) -> str:
        return (f"Balancer(weights={self.weights}, balance_grads={self.balance_grads}, total_norm={self.total_norm}, "
                f"ema_decay={self.ema_decay}, per_batch_item={self.per_batch_item})")

    @property
    def metrics(self) -> dict[str, float]:
        """Numbers from the last :meth:`backward`, per balanced loss ``k``.

        ``grad_norm_k``: this step's ‖∂ℓ_k/∂input‖ (per-item mean if ``per_batch_item``;
        averaged over workers under ``torch.distributed``);
        ``ema_norm_k``: its running average; ``share_k``: fraction of the combined gradient's
        (sum-of-norms) magnitude that came from ``k`` — ≈ ``λ_k / Σλ`` when balancing.
        With ``monitor=True`` also ``ratio_k``: ``ema_norm_k / Σ ema_norm`` — the share ``k``
        would have had *without* balancing (AudioCraft's monitor output).
        """
        return dict(self._metrics)

    def ema_norms(self) -> dict[str, float]:
        """Current averaged gradient norm per loss (losses never seen are absent)."""
        return {k: self._ema_sum[k] / self._ema_count[k] for k in self._ema_sum}

    def _grad_norm(self, grad: torch.Tensor) -> torch.Tensor:
        g = grad.double() if grad.dtype == torch.float64 else grad.float()
        if self.per_batch_item and g.dim() >= 2:
            return g.flatten(1).norm(dim=1).mean()
        return g.norm()

    def _average_over_workers(self, norms: list[float], count: int, device: torch.device) -> list[float]:
        """Batch-size-weighted mean of the norms over ``torch.distributed`` workers (no-op when single)."""
        if _distributed_world() == 1:
            return norms
        t = torch.tensor([v * count for v in norms] + [float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return (t[:-1] / t[-1]).tolist()

    def backward(self, losses: Mapping[str, torch.Tensor], input: torch.Tensor,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
        """Backpropagate the balanced combination of ``losses`` through ``input``; return Σ losses (detached).

        ``input`` is the tensor every loss is a function of (the decoded audio); it must require
        grad. Each loss name must be in ``weights``; losses of weight 0 are skipped (neither
        differentiated nor summed). Raises :class:`BalancerError` for unknown names, non-scalar
        losses or a loss with no path to ``input``, and :class:`NonFiniteGradientError` for NaN /
        Inf gradients — both before any state is changed or any gradient is accumulated.
        ``extra``: an unbalanced scalar loss that is not (only) a function of ``input`` (the RVQ
        commitment penalty), back-propagated in the same single backward pass: a second backward
        through a DDP model would mark its parameters ready twice.
        """
        if not isinstance(input, torch.Tensor) or not input.requires_grad:
            raise BalancerError("balancer input must be a tensor that requires grad (the model's output, "
                                "e.g. the decoded audio), not a detached tensor")
        unknown = sorted(set(losses) - set(self.weights))
        if unknown:
            raise BalancerError(f"losses {unknown} have no weight; known weights: {sorted(self.weights)}")
        active = [name for name in losses if self.weights[name] > 0.0]
        if not active:
            raise BalancerError(f"no loss with a non-zero weight among {sorted(losses)}")

        grads: dict[str, torch.Tensor] = {}
        norms: list[torch.Tensor] = []
        for name in active:
            loss = losses[name]
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise BalancerError(f"loss {name!r} must be a scalar tensor, got "
                                    f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}")
            grad = None
            if loss.requires_grad:
                (grad,) = torch.autograd.grad(loss.reshape(()), [input], retain_graph=True, allow_unused=True)
            if grad is None:
                raise BalancerError(f"loss {name!r} does not depend on the balancer input; backpropagate it "
                                    "separately (e.g. (w * loss).backward()) or give it weight 0")
            grads[name] = grad
            norms.append(self._grad_norm(grad))

        values = torch.stack(norms).tolist()  # one host sync for all losses
        bad = [name for name, v in zip(active, values) if not math.isfinite(v)]
        if bad:
            raise NonFiniteGradientError(f"gradient of loss(es) {bad} w.r.t. the balancer input is NaN/Inf; "
                                         "skip this batch or lower the learning rate")
        count = input.shape[0] if self.per_batch_item and input.dim() >= 2 else 1
        values = self._average_over_workers(values, count, input.device)

        for name, v in zip(active, values):
            self._ema_sum[name] = self.ema_decay * self._ema_sum.get(name, 0.0) + v
            self._ema_count[name] = self.ema_decay * self._ema_count.get(name, 0.0) + 1.0
        ema = {name: self._ema_sum[name] / self._ema_count[name] for name in active}

        total_weight = sum(self.weights[name] for name in active)
        if self.balance_grads:
            scales = {name: self.total_norm * self.weights[name] / total_weight / (self.epsilon + ema[name])
                      for name in active}
        else:
            scales = {name: self.weights[name] for name in active}

        work_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
        out_grad = torch.zeros(input.shape, dtype=work_dtype, device=input.device)
        for name in active:
            out_grad.add_(grads[name].to(work_dtype), alpha=scales[name])

        contrib = {name: scales[name] * v for name, v in zip(active, values)}
        contrib_total = sum(contrib.values())
        metrics: dict[str, float] = {}
        for name, v in zip(active, values):
            metrics[f"grad_norm_{name}"] = v
            metrics[f"ema_norm_{name}"] = ema[name]
            metrics[f"share_{name}"] = contrib[name] / contrib_total if contrib_total > 0 else 0.0
        if self.monitor:
            ema_total = sum(ema.values())
            for name in active:
                metrics[f"ratio_{name}"] = ema[name] / ema_total if ema_total > 0 else 0.0
        self._metrics = metrics

        _single_backward(input, out_grad.to(input.dtype), extra)
        return torch.stack([losses[name].detach().reshape(()).to(work_dtype) for name in active]).sum()

    def state_dict(self) -> dict[str, Any]:
        """The EMA state (plain floats; ``torch.load(weights_only=True)``-safe) for checkpoints."""
        return {"format": _STATE_FORMAT, "version": _STATE_VERSION, "ema_decay": self.ema_decay,
                "ema_sum": dict(self._ema_sum), "ema_count": dict(self._ema_count)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the EMA saved by :meth:`state_dict` (weights and options come from the constructor)."""
        if not isinstance(state, Mapping) or state.get("format") != _STATE_FORMAT:
            raise BalancerError("not a balancer state (missing format tag); pass what Balancer.state_dict() returned")
        if state.get("version") != _STATE_VERSION:
            raise BalancerError(f"balancer state version {state.get('version')!r} is not supported "
                                f"(expected {_STATE_VERSION})")
        ema_sum, ema_count = state.get("ema_sum"), state.get("ema_count")
        if not isinstance(ema_sum, Mapping) or not isinstance(ema_count, Mapping) or set(ema_sum) != set(ema_count):
            raise BalancerError("balancer state is corrupt: ema_sum and ema_count must be dicts with the same keys")
        if float(state.get("ema_decay", self.ema_decay)) != self.ema_decay:
            log.warning("balancer state was saved with ema_decay=%s; continuing with %s",
                        state.get("ema_decay"), self.ema_decay)
        self._ema_sum = {str(k): float(v) for k, v in ema_sum.items()}
        self._ema_count = {str(k): float(v) for k, v in ema_count.items()}
