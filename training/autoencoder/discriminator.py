"""Multi-scale STFT (MS-STFT) discriminator of EnCodec (Défossez et al., 2022, §3.4).

Each scale judges the complex STFT (real and imaginary parts as image channels) with a small 2-D
conv net, so the adversary sees phase as well as magnitude at several resolutions. ``forward``
returns ``(logits, fmaps)``, the activations feeding the feature-matching loss; any number of
input channels. Layout and axes: README.md, "SEANet autoencoder", **Discriminator**.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from training.utils import BatchError

__all__ = ["DiscriminatorInputError", "MultiScaleSTFTDiscriminator", "STFTDiscriminator"]


class DiscriminatorInputError(BatchError, ValueError):
    """The waveform given to the discriminator has the wrong shape, channel count or length."""


def _same_padding(kernel_size: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Padding that keeps a (stride-1) 2-D conv's output the size of its input."""
    return ((kernel_size[0] - 1) * dilation[0] // 2, (kernel_size[1] - 1) * dilation[1] // 2)


def _wn_conv2d(in_ch: int, out_ch: int, kernel_size: tuple[int, int], stride: tuple[int, int] = (1, 1),
               dilation: tuple[int, int] = (1, 1)) -> nn.Module:
    """A weight-normalised ``Conv2d`` with 'same' padding (before striding)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, dilation=dilation,
                     padding=_same_padding(kernel_size, dilation))
    return weight_norm(conv)


def _check_waveform(x: torch.Tensor, in_channels: int, min_length: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DiscriminatorInputError(f"discriminator expects a waveform [batch, channels, samples], got {shape}")
    if x.shape[1] != in_channels:
        raise DiscriminatorInputError(
            f"discriminator was built for in_channels={in_channels} but the waveform has {x.shape[1]} "
            "channels; build it with the model's channel count")
    if x.shape[-1] < min_length:
        raise DiscriminatorInputError(
            f"waveform has {x.shape[-1]} samples but the discriminator's largest STFT needs at least "
            f"{min_length}; use longer segments or smaller n_ffts")


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT discriminator: complex STFT → 2-D conv stack → logit map."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, filters: int = 32, n_fft: int = 1024,
                 hop_length: int = 256, win_length: int = 1024, max_filters: int = 1024, filters_scale: int = 1,
                 kernel_size: tuple[int, int] = (3, 9), dilations: Sequence[int] = (1, 2, 4),
                 stride: tuple[int, int] = (1, 2), normalized: bool = True, negative_slope: float = 0.2) -> None:
        super().__init__()
        if len(kernel_size) != 2 or len(stride) != 2:
            raise ValueError(f"kernel_size and stride must be pairs, got {kernel_size} and {stride}")
        if win_length > n_fft or hop_length <= 0:
            raise ValueError(f"need 0 < hop_length and win_length <= n_fft, got hop={hop_length}, "
                             f"win={win_length}, n_fft={n_fft}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.normalized = normalized
        # Not persistent: it is a constant, and checkpoints stay loadable if the window changes.
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.activation = nn.LeakyReLU(negative_slope)

        k_t, k_f = int(kernel_size[0]), int(kernel_size[1])
        widths = [min(filters * filters_scale ** i, max_filters) for i in range(len(dilations) + 2)]
        convs = [_wn_conv2d(2 * in_channels, widths[0], (k_t, k_f))]
        for i, d in enumerate(dilations):
            convs.append(_wn_conv2d(widths[i], widths[i + 1], (k_t, k_f), stride=tuple(stride),
                                    dilation=(int(d), 1)))
        convs.append(_wn_conv2d(widths[len(dilations)], widths[-1], (k_t, k_t)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = _wn_conv2d(widths[-1], out_channels, (k_t, k_t))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, N]`` waveform → ``[B, 2·C, frames, n_fft // 2 + 1]`` (real parts, then imaginary)."""
        b, c, n = x.shape
        # STFT in (at least) float32 even under autocast: half-precision FFTs are unsupported or lossy.
        work = x if x.dtype == torch.float64 else x.float()
        window = self.window.to(work.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(work.reshape(b * c, n), n_fft=self.n_fft, hop_length=self.hop_length,
                              win_length=self.win_length, window=window, center=False, return_complex=True)
            if self.normalized:
                # torchaudio's normalized=True ("window"): divide by the window's L2 norm.
                spec = spec / window.pow(2).sum().sqrt()
        spec = spec.reshape(b, c, spec.shape[-2], spec.shape[-1])
        z = torch.cat([spec.real, spec.imag], dim=1).transpose(2, 3)
        return z.to(x.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, C, N]`` → (logits ``[B, out_channels, frames', freq']``, feature maps of every inner conv)."""
        _check_waveform(x, self.in_channels, self.n_fft)
        z = self.spectrogram(x)
        fmap: list[torch.Tensor] = []
        for conv in self.convs:
            z = self.activation(conv(z))
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator: one :class:`STFTDiscriminator` per FFT size.

    Defaults follow the paper / AudioCraft: FFT sizes (1024, 2048, 512, 256, 128), hop
    ``n_fft // 4``, Hann window of ``n_fft`` samples, 32 filters, weight norm, LeakyReLU(0.2).
    The input must be at least ``max(n_ffts)`` samples long (the STFT is not centred).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, filters: int = 32,
                 n_ffts: Sequence[int] = (1024, 2048, 512, 256, 128), hop_lengths: Sequence[int] | None = None,
                 win_lengths: Sequence[int] | None = None, max_filters: int = 1024, filters_scale: int = 1,
                 kernel_size: tuple[int, int] = (3, 9), dilations: Sequence[int] = (1, 2, 4),
                 stride: tuple[int, int] = (1, 2), normalized: bool = True, negative_slope: float = 0.2) -> None:
        super().__init__()
        n_ffts = [int(n) for n in n_ffts]
        hops = [n // 4 for n in n_ffts] if hop_lengths is None else [int(h) for h in hop_lengths]
        wins = list(n_ffts) if win_lengths is None else [int(w) for w in win_lengths]
        if not n_ffts or not len(n_ffts) == len(hops) == len(wins):
            raise ValueError(f"n_ffts, hop_lengths and win_lengths must be non-empty and of equal length, "
                             f"got {n_ffts}, {hops}, {wins}")
        self.in_channels = in_channels
        self.min_length = max(n_ffts)
        self.discriminators = nn.ModuleList([
            STFTDiscriminator(in_channels=in_channels, out_channels=out_channels, filters=filters, n_fft=n,
                              hop_length=h, win_length=w, max_filters=max_filters, filters_scale=filters_scale,
                              kernel_size=kernel_size, dilations=dilations, stride=stride, normalized=normalized,
                              negative_slope=negative_slope)
            for n, h, w in zip(n_ffts, hops, wins)
        ])

    @property
    def num_discriminators(self) -> int:
        """Number of STFT scales (length of the ``logits`` / ``fmaps`` lists)."""
        return len(self.discriminators)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """``[B, C, N]`` waveform → (one logit map per scale, one list of feature maps per scale)."""
        _check_waveform(x, self.in_channels, self.min_length)
        logits: list[torch.Tensor] = []
        fmaps: list[list[torch.Tensor]] = []
        for disc in self.discriminators:
            logit, fmap = disc(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps
