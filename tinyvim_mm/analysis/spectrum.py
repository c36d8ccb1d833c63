"""Frequency analysis of feature maps, as in the TinyViM paper (Fig. 2 / 4).

* :func:`log_amplitude_spectrum`: the centred (``fftshift``) log amplitude of
  the 2-D FFT, averaged over channels (and batch).
* :func:`high_frequency_ratio`: the share of a map's spectral energy outside a
  centred low-frequency disc.
* :func:`collect_mixer_maps`: runs a model and captures, for every
  :class:`~tinyvim_mm.models.layers.LaplaceMixer`, its input, its low- and
  high-frequency branches before and after their operators (the Mamba branch,
  the Laplace residual, the depth-wise conv branch) and its output.
"""
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyvim_mm.models.layers import LaplaceMixer

#: Names of the maps :func:`collect_mixer_maps` returns per mixer, in order.
MIXER_MAPS = ('input', 'low_in', 'mamba', 'residual', 'low_out', 'high_out', 'output')


def _as_maps(x: torch.Tensor) -> torch.Tensor:
    """``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` -> ``(N, H, W)`` float64."""
    if x.dim() < 2:
        raise ValueError(f'expected a (..., H, W) map, got shape {tuple(x.shape)}')
    return x.detach().reshape(-1, *x.shape[-2:]).to(torch.float64)


def log_amplitude_spectrum(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``log(|FFT2(x)| + eps)``, zero frequency in the centre, averaged over
    every map of ``x`` (shape ``(..., H, W)``): ``(H, W)``."""
    amplitude = torch.fft.fft2(_as_maps(x)).abs()
    return torch.fft.fftshift(torch.log(amplitude + eps).mean(0), dim=(-2, -1))


def low_frequency_mask(height: int, width: int, radius: float = 0.25) -> torch.Tensor:
    """Boolean ``(H, W)`` mask, in the ``fftshift`` layout, of the frequencies
    within ``radius`` times the Nyquist frequency (0.5 cycle/pixel) of the
    centre: a disc of ``radius * min(H, W) / 2`` bins for square maps."""
    fy = torch.fft.fftshift(torch.fft.fftfreq(height, dtype=torch.float64))
    fx = torch.fft.fftshift(torch.fft.fftfreq(width, dtype=torch.float64))
    return fy[:, None]**2 + fx[None, :]**2 <= (0.5 * radius)**2


def high_frequency_ratio(x: torch.Tensor, radius: float = 0.25) -> float:
    """Relative high-frequency energy of ``x`` (shape ``(..., H, W)``): the
    spectral energy outside :func:`low_frequency_mask` over the total, summed
    over all maps. Each map's mean is removed first, so the ratio describes the
    spatial variation, not the offset; a constant input gives 0."""
    maps = _as_maps(x)
    maps = maps - maps.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(maps).abs()**2, dim=(-2, -1)).sum(0)
    total = power.sum()
    if total <= 0:
        return 0.0
    low = low_frequency_mask(*power.shape, radius=radius)
    return float(power[~low].sum() / total)


def _nearest_up(x: torch.Tensor, factor: int, size: Tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling by ``factor``, cropped to ``size``."""
    x = x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return x[..., :size[0], :size[1]]


@torch.no_grad()
def collect_mixer_maps(model: nn.Module, x: torch.Tensor) -> List[Dict[str, object]]:
    """Run ``model(x)`` and capture the branches of every Laplace mixer.

    Returns one dict per :class:`LaplaceMixer` (in forward order) with
    ``name`` (module path), ``pool_size``, ``low_channels``, ``channels`` and
    the maps of :data:`MIXER_MAPS`: ``input`` (what enters the mixer),
    ``low_in`` / ``high_in`` (the two channel groups after ``in_proj``, the
    axial Rep inception and SiLU), ``mamba`` (the scan branch: pooled, scanned,
    layer-normed, upsampled), ``residual`` (the Laplace residual
    ``low_in - up(pool(low_in))``; zero without pooling), ``low_out`` (``mamba +
    residual``: the low branch after the Mamba), ``high_out`` (the depth-wise
    conv branch) and ``output``. Captured through forward hooks on the mixer,
    its ``act`` and (pre-hook) its ``out_proj``; nothing in the model changes.
    """
    records: List[Dict[str, object]] = []
    handles = []

    def make_hooks(name: str, mixer: LaplaceMixer) -> None:
        rec: Dict[str, object] = dict(name=name, pool_size=mixer.pool_size,
                                      low_channels=mixer.low_channels,
                                      channels=mixer.channels)

        def on_input(_m: nn.Module, args: tuple) -> None:
            rec['input'] = args[0]
            records.append(rec)

        def on_act(_m: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            rec['low_in'], rec['high_in'] = out.split(
                [mixer.low_channels, mixer.channels - mixer.low_channels], dim=1)

        def on_merge(_m: nn.Module, args: tuple) -> None:
            low_out, high_out = args[0].split(
                [mixer.low_channels, mixer.channels - mixer.low_channels], dim=1)
            low_in = rec['low_in']
            k = mixer.pool_size
            if k > 1:
                pooled = F.avg_pool2d(low_in, k, ceil_mode=True)
                residual = low_in - _nearest_up(pooled, k, low_in.shape[-2:])
            else:
                residual = torch.zeros_like(low_in)
            rec.update(low_out=low_out, high_out=high_out, residual=residual,
                       mamba=low_out - residual)

        def on_output(_m: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            rec['output'] = out

        handles.extend([
            mixer.register_forward_pre_hook(on_input),
            mixer.act.register_forward_hook(on_act),
            mixer.out_proj.register_forward_pre_hook(on_merge),
            mixer.register_forward_hook(on_output),
        ])

    for name, module in model.named_modules():
        if isinstance(module, LaplaceMixer):
            make_hooks(name, module)
    if not handles:
        raise ValueError(f'{type(model).__name__} has no LaplaceMixer')
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return records
