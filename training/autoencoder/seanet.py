"""SEANet encoder and decoder: EnCodec's convolutional autoencoder (Défossez et al., 2022).

Strided convs with residual blocks and an LSTM; ``ratios`` is given in *decoder* order (largest
first) and the encoder applies it reversed, so both ends sit next to the same ratio. Convs are
padded "same"-style: ``N`` samples give ``ceil(N / hop_length)`` frames, and ``T`` frames decode
to exactly ``T * hop_length`` samples. The layer-by-layer layout: README.md, "SEANet autoencoder
with MS-STFT GAN", **Architecture**.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

NORMS = ("none", "weight_norm", "spectral_norm", "time_group_norm")
PAD_MODES = ("reflect", "replicate", "constant", "circular")

__all__ = ["NORMS", "PAD_MODES", "SEANetEncoder", "SEANetDecoder", "NormConv1d", "NormConvTranspose1d",
           "SEANetResnetBlock", "SkipLSTM"]


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _wrap_norm(module: nn.Module, norm: str) -> nn.Module:
    """Reparametrise ``module``'s weight (weight / spectral norm); other norms leave it alone."""
    if norm == "weight_norm":
        return parametrizations.weight_norm(module)
    if norm == "spectral_norm":
        return parametrizations.spectral_norm(module)
    return module


def _output_norm(norm: str, channels: int) -> nn.Module:
    """The norm applied to a conv's output: GroupNorm(1, C) for ``time_group_norm``, else identity."""
    return nn.GroupNorm(1, channels) if norm == "time_group_norm" else nn.Identity()


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the last axis; ``reflect`` also works on inputs shorter than the padding.

    ``F.pad(mode="reflect")`` needs ``pad < length``; a very short input (e.g. one latent frame)
    is first zero-extended so the reflection is defined, then the extension is cut off again.
    """
    if left == 0 and right == 0:
        return x
    if mode == "constant":
        return F.pad(x, (left, right))
    length = x.shape[-1]
    extra = 0
    if mode == "reflect" and max(left, right) >= length:
        extra = max(left, right) - length + 1
        x = F.pad(x, (0, extra))
    out = F.pad(x, (left, right), mode=mode)
    return out[..., : out.shape[-1] - extra] if extra else out


def make_activation(activation: str, activation_params: Mapping[str, Any] | None = None) -> nn.Module:
    """``torch.nn.<activation>(**activation_params)``, e.g. ``ELU`` with ``{"alpha": 1.0}``; clear error otherwise."""
    cls = getattr(nn, activation, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"activation must name a torch.nn module such as 'ELU', got {activation!r}")
    return cls(**dict(activation_params or {}))


class NormConv1d(nn.Module):
    """Conv1d with weight/spectral/group norm and "same" padding (symmetric, or all left if causal).

    The total padding is ``effective_kernel - stride``; an extra right pad of ``-N mod stride``
    makes the last window complete, so the output has ``ceil(N / stride)`` frames. Causal with
    ``pad_mode="reflect"`` (AudioCraft's default) mirrors a few samples after the start into the
    left pad; use ``"constant"`` where strict causality matters.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, bias: bool = True, causal: bool = False, norm: str = "none",
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        _check_norm(norm)
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        effective = (kernel_size - 1) * dilation + 1
        if effective < stride:
            raise ValueError(f"kernel {kernel_size} (dilation {dilation}) is shorter than stride {stride}")
        self.conv = _wrap_norm(nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                         dilation=dilation, bias=bias), norm)
        self.norm = _output_norm(norm, out_channels)
        self.stride = stride
        self.padding_total = effective - stride
        self.causal = causal
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, N] -> [B, C_out, ceil(N / stride)]``."""
        extra = (-x.shape[-1]) % self.stride
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        x = pad1d(x, left, right + extra, self.pad_mode)
        return self.norm(self.conv(x))


class NormConvTranspose1d(nn.Module):
    """ConvTranspose1d with norm; trims ``kernel - stride`` samples so ``T`` frames give ``T * stride``.

    Non-causal: the trim is split between both ends (as the encoder's padding was); causal: it is
    all taken from the right, so no output depends on future frames.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True, causal: bool = False, norm: str = "none") -> None:
        super().__init__()
        _check_norm(norm)
        if kernel_size < stride:
            raise ValueError(f"transposed conv kernel {kernel_size} is shorter than stride {stride}")
        self.convtr = _wrap_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size,
                                                    stride=stride, bias=bias), norm)
        self.norm = _output_norm(norm, out_channels)
        self.padding_total = kernel_size - stride
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T] -> [B, C_out, T * stride]``."""
        y = self.norm(self.convtr(x))
        right = self.padding_total if self.causal else self.padding_total // 2
        left = self.padding_total - right
        return y[..., left: y.shape[-1] - right]


class SEANetResnetBlock(nn.Module):
    """Residual unit: (act, dilated conv dim -> dim/compress, act, conv -> dim) + skip.

    ``true_skip`` makes the skip an identity; otherwise it is a learned 1x1 conv.
    """

    def __init__(self, dim: int, kernel_sizes: Sequence[int] = (3, 1), dilations: Sequence[int] = (1, 1),
                 activation: str = "ELU", activation_params: Mapping[str, Any] | None = None,
                 norm: str = "none", causal: bool = False, pad_mode: str = "reflect",
                 compress: int = 2, true_skip: bool = True) -> None:
        super().__init__()
        if len(kernel_sizes) != len(dilations):
            raise ValueError("kernel_sizes and dilations must have the same length")
        hidden = dim // compress
        if hidden < 1:
            raise ValueError(f"compress={compress} leaves no channels out of {dim}")
        layers: list[nn.Module] = []
        last = len(kernel_sizes) - 1
        for i, (k, d) in enumerate(zip(kernel_sizes, dilations)):
            c_in = dim if i == 0 else hidden
            c_out = dim if i == last else hidden
            layers += [make_activation(activation, activation_params),
                       NormConv1d(c_in, c_out, k, dilation=d, causal=causal, norm=norm, pad_mode=pad_mode)]
        self.block = nn.Sequential(*layers)
        self.shortcut: nn.Module = (nn.Identity() if true_skip else
                                    NormConv1d(dim, dim, 1, causal=causal, norm=norm, pad_mode=pad_mode))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return self.shortcut(x) + self.block(x)


class SkipLSTM(nn.Module):
    """Multi-layer LSTM over time on ``[B, C, T]`` with a residual connection (SEANet's LSTM)."""

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dim, dim, num_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        seq = x.transpose(1, 2)
        y, _ = self.lstm(seq)
        if self.skip:
            y = y + seq
        return y.transpose(1, 2)


def _check_common(channels: int, dimension: int, n_filters: int, n_residual_layers: int,
                  ratios: Sequence[int], lstm: int, compress: int, dilation_base: int) -> tuple[int, ...]:
    """Validate the arguments shared by encoder and decoder; returns ``ratios`` as a tuple of ints."""
    for name, value, low in (("channels", channels, 1), ("dimension", dimension, 1),
                             ("n_filters", n_filters, 1), ("n_residual_layers", n_residual_layers, 0),
                             ("lstm", lstm, 0), ("compress", compress, 1), ("dilation_base", dilation_base, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    ratios = tuple(ratios)
    if not ratios or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ratios):
        raise ValueError(f"ratios must be a non-empty list of positive integers, got {list(ratios)!r}")
    return ratios


def _init_common(module: nn.Module, channels: int, dimension: int, n_filters: int, n_residual_layers: int,
                 ratios: Sequence[int], lstm: int, compress: int, dilation_base: int, norm: str, causal: bool,
                 pad_mode: str, activation: str, activation_params: Mapping[str, Any] | None,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Checks and attributes the encoder and decoder share; returns their activation/conv kwargs."""
    module.ratios = _check_common(channels, dimension, n_filters, n_residual_layers, ratios, lstm,
                                  compress, dilation_base)
    _check_norm(norm)
    module.channels, module.dimension, module.n_filters = channels, dimension, n_filters
    module.hop_length = math.prod(module.ratios)
    return ({"activation": activation, "activation_params": activation_params},
            {"norm": norm, "causal": causal, "pad_mode": pad_mode})


class SEANetEncoder(nn.Module):
    """Waveform ``[B, channels, N]`` -> latent ``[B, dimension, ceil(N / hop_length)]``.

    ``ratios`` are given in decoder order and applied reversed (see the module docstring);
    ``hop_length = prod(ratios)`` (320 for the default: 75 frames/s at 24 kHz).
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 n_residual_layers: int = 1, ratios: Sequence[int] = (8, 5, 4, 2),
                 activation: str = "ELU", activation_params: Mapping[str, Any] | None = None,
                 norm: str = "weight_norm", kernel_size: int = 7, last_kernel_size: int = 7,
                 residual_kernel_size: int = 3, dilation_base: int = 2, causal: bool = False,
                 pad_mode: str = "reflect", true_skip: bool = True, compress: int = 2, lstm: int = 2) -> None:
        super().__init__()
        act, conv = _init_common(self, channels, dimension, n_filters, n_residual_layers, ratios, lstm,
                                 compress, dilation_base, norm, causal, pad_mode, activation,
                                 activation_params)

        mult = 1
        layers: list[nn.Module] = [NormConv1d(channels, mult * n_filters, kernel_size, **conv)]
        for ratio in reversed(self.ratios):
            width = mult * n_filters
            for j in range(n_residual_layers):
                layers.append(SEANetResnetBlock(width, kernel_sizes=(residual_kernel_size, 1),
                                                dilations=(dilation_base ** j, 1), compress=compress,
                                                true_skip=true_skip, **act, **conv))
            layers += [make_activation(**act),
                       NormConv1d(width, width * 2, kernel_size=ratio * 2, stride=ratio, **conv)]
            mult *= 2
        if lstm:
            layers.append(SkipLSTM(mult * n_filters, num_layers=lstm))
        layers += [make_activation(**act), NormConv1d(mult * n_filters, dimension, last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``[B, channels, N]`` to ``[B, dimension, ceil(N / hop_length)]``."""
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"SEANetEncoder expects [batch, {self.channels}, samples], got {list(x.shape)}")
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latent ``[B, dimension, T]`` -> waveform ``[B, channels, T * hop_length]``; mirrors the encoder."""

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 n_residual_layers: int = 1, ratios: Sequence[int] = (8, 5, 4, 2),
                 activation: str = "ELU", activation_params: Mapping[str, Any] | None = None,
                 norm: str = "weight_norm", kernel_size: int = 7, last_kernel_size: int = 7,
                 residual_kernel_size: int = 3, dilation_base: int = 2, causal: bool = False,
                 pad_mode: str = "reflect", true_skip: bool = True, compress: int = 2, lstm: int = 2) -> None:
        super().__init__()
        act, conv = _init_common(self, channels, dimension, n_filters, n_residual_layers, ratios, lstm,
                                 compress, dilation_base, norm, causal, pad_mode, activation,
                                 activation_params)

        mult = 2 ** len(self.ratios)
        layers: list[nn.Module] = [NormConv1d(dimension, mult * n_filters, kernel_size, **conv)]
        if lstm:
            layers.append(SkipLSTM(mult * n_filters, num_layers=lstm))
        for ratio in self.ratios:
            width = mult * n_filters
            layers += [make_activation(**act),
                       NormConvTranspose1d(width, width // 2, kernel_size=ratio * 2, stride=ratio,
                                           norm=norm, causal=causal)]
            for j in range(n_residual_layers):
                layers.append(SEANetResnetBlock(width // 2, kernel_sizes=(residual_kernel_size, 1),
                                                dilations=(dilation_base ** j, 1), compress=compress,
                                                true_skip=true_skip, **act, **conv))
            mult //= 2
        layers += [make_activation(**act), NormConv1d(n_filters, channels, last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode ``[B, dimension, T]`` to ``[B, channels, T * hop_length]``."""
        if z.dim() != 3 or z.shape[1] != self.dimension:
            raise ValueError(f"SEANetDecoder expects [batch, {self.dimension}, frames], got {list(z.shape)}")
        return self.model(z)
