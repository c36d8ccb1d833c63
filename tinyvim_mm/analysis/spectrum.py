"""Frequency analysis of feature maps, as in the TinyViM paper (Fig. 2 / 4).

* :func:`log_amplitude_spectrum`: the centred (``fftshift``) log amplitude of
  the 2-D FFT, averaged over channels (and batch).
* :func:`high_frequency_ratio`: the share of a map's spectral energy outside a
  centred low-frequency disc.
* :func:`collect_mixer_maps`: runs a model and captures, for every
  :class:`~tinyvim_mm.models.layers.LaplaceMixer`, its input, its low- and
  high-frequency branches before and after their operators (the Mamba branch,
  the Laplace residual, the depth-wise conv branch) and its output.
* :func:`plot_spectra` (``tools/visualize_spectrum.py``): one image through a
  TinyViM backbone (:func:`build_backbone`, :func:`load_image`), the spectra and
  high-frequency energies of every mixer's branches (:func:`analyse`) as a figure
  (:func:`plot`) and a JSON file.
"""
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger

from tinyvim_mm.models import TinyViM
from tinyvim_mm.models.layers import FusedLaplaceMixer, LaplaceMixer

#: Names of the maps :func:`collect_mixer_maps` returns per mixer, in order.
MIXER_MAPS = ('input', 'low_in', 'mamba', 'residual', 'low_out', 'high_out', 'output')
#: The figure's panels: (map key, panel title).
PANELS = [
    ('input', 'mixer input'),
    ('low_in', 'low part, before Mamba'),
    ('mamba', 'Mamba branch (scan)'),
    ('residual', 'Laplace residual'),
    ('low_out', 'low part, after Mamba\n(scan + residual)'),
    ('high_out', 'high part: DW-conv branch'),
    ('output', 'mixer output'),
]
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, as mmpretrain's data preprocessor
IMAGENET_STD = (58.395, 57.12, 57.375)


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

    fused = [name for name, m in model.named_modules() if isinstance(m, FusedLaplaceMixer)]
    if fused:
        raise ValueError(f'{type(model).__name__} holds fused mixers ({", ".join(fused)}), '
                         'whose kernels compute the branches without the hooked modules: '
                         'analyse the folded model, or optimize_for_inference(..., '
                         'fuse_mixers=False)')
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


def build_backbone(config: Optional[str] = None, arch: str = 's',
                   checkpoint: Optional[str] = None
                   ) -> Tuple[TinyViM, Sequence[float], Sequence[float], bool]:
    """The TinyViM backbone of ``config`` (or of ``arch``), with ``checkpoint``
    loaded when given (any layout :class:`TinyViM` accepts: released, converted,
    or a classification / detection / segmentation checkpoint); and the
    config's normalisation ``(mean, std, to_rgb)``."""
    mean, std, to_rgb = IMAGENET_MEAN, IMAGENET_STD, True
    if config:
        from mmengine.config import Config
        cfg = Config.fromfile(config)
        arch = cfg.model.backbone.arch
        pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
        mean, std = pre.get('mean', mean), pre.get('std', std)
        to_rgb = pre.get('to_rgb', pre.get('bgr_to_rgb', to_rgb))
    init_cfg = dict(type='Pretrained', checkpoint=checkpoint) if checkpoint else None
    model = TinyViM(arch, out_indices=(0, 1, 2, 3), init_cfg=init_cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    if not checkpoint:  # mmengine would print the init of every parameter
        logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval(), mean, std, to_rgb


def load_image(path: str, size: int, mean: Sequence[float], std: Sequence[float],
               to_rgb: bool) -> Tuple[np.ndarray, torch.Tensor]:
    """The image (RGB, shorter side ``size``) and its normalised ``(1, 3, H, W)``
    tensor; ``FileNotFoundError`` / ``ValueError`` for a missing file / a non-image."""
    import mmcv
    if not Path(path).is_file():
        raise FileNotFoundError(f'Image {path!r} not found')
    bgr = mmcv.imread(path)
    if bgr is None:
        raise ValueError(f'{path!r} is not a readable image (JPEG, PNG, BMP, ...)')
    bgr = mmcv.imrescale(bgr, size / min(bgr.shape[:2]), interpolation='bicubic')
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    x = torch.from_numpy((rgb if to_rgb else bgr).astype(np.float32)).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return rgb, x[None]


def analyse(model: TinyViM, x: torch.Tensor, radius: float = 0.25,
            min_size: int = 8) -> List[Dict[str, object]]:
    """Per mixer with maps of at least ``min_size`` pixels: its name, shape,
    and per map of :data:`PANELS` the log-amplitude spectrum and relative
    high-frequency energy."""
    rows = []
    for rec in collect_mixer_maps(model, x):
        h, w = rec['input'].shape[-2:]
        if min(h, w) < min_size:
            continue
        stage = int(rec['name'].split('.')[1]) // 2 + 1  # network.{2*stage}.{block}.op
        rows.append(dict(
            name=rec['name'], stage=stage, size=(h, w), pool_size=rec['pool_size'],
            low_channels=rec['low_channels'], channels=rec['channels'],
            spectra={k: log_amplitude_spectrum(rec[k]).float().numpy() for k, _ in PANELS},
            hf={k: high_frequency_ratio(rec[k], radius) for k, _ in PANELS}))
    if not rows:
        raise ValueError(f'no Laplace mixer has maps of >= {min_size} pixels: use a larger '
                         '--size or a smaller --min-size')
    return rows


def plot(rows: List[Dict[str, object]], image: np.ndarray, out: str, title: str,
         radius: float) -> None:
    """One row per mixer: an info panel (the image on the first row) and the
    spectra of :data:`PANELS`, each titled with its relative HF energy."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    ncol = len(PANELS) + 1
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.1 * ncol, 2.35 * len(rows) + 0.7),
                             squeeze=False)
    for r, row in enumerate(rows):
        info = axes[r, 0]
        h, w = row['size']
        text = (f"stage {row['stage']}\n{row['name'].removesuffix('.op')}\n{h}×{w} map\n"
                f"low {row['low_channels']} / high {row['channels'] - row['low_channels']} ch\n"
                f"pool {row['pool_size']}")
        if r == 0:
            info.imshow(image)
            info.set_title('input image', fontsize=9)
            info.set_xlabel(text.replace('\n', ', ', 1), fontsize=7)
            info.set_xticks([])
            info.set_yticks([])
        else:
            info.axis('off')
            info.text(0.5, 0.5, text, ha='center', va='center', fontsize=8,
                      transform=info.transAxes)
        for c, (key, label) in enumerate(PANELS, start=1):
            ax = axes[r, c]
            spec = row['spectra'][key]
            lo, hi = np.percentile(spec, [1, 99.5])
            ax.imshow(spec, cmap='inferno', vmin=lo, vmax=max(hi, lo + 1e-6))
            # the low-frequency disc the HF energy is measured outside of
            ax.add_patch(Ellipse((w // 2, h // 2), radius * w, radius * h, fill=False,
                                 color='cyan', lw=0.8, ls='--'))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"HF energy {row['hf'][key]:.2f}", fontsize=8)
            if r == 0:
                ax.set_title(label, fontsize=8)
    fig.suptitle(f'{title}\nlog-amplitude FFT spectra (fftshift, mean over channels); '
                 f'HF energy = share outside the dashed disc (r = {radius} × Nyquist)',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_spectra(image: str, out: str, config: Optional[str] = None, arch: str = 's',
                 checkpoint: Optional[str] = None, size: int = 224, radius: float = 0.25,
                 min_size: int = 8) -> List[Dict[str, object]]:
    """Build the model, analyse ``image``, save the figure ``out`` and the
    numbers ``out`` with ``.json``; returns the per-mixer HF energies."""
    model, mean, std, to_rgb = build_backbone(config, arch, checkpoint)
    rgb, x = load_image(image, size, mean, std, to_rgb)
    rows = analyse(model, x, radius, min_size)
    weights = Path(checkpoint).name if checkpoint else 'random init'
    name = Path(config).stem if config else f'TinyViM-{arch.upper()}'
    plot(rows, rgb, out, f'{name} ({weights}), {Path(image).name} at '
         f'{x.shape[-2]}×{x.shape[-1]}', radius)
    summary = [dict(name=r['name'], stage=r['stage'], size=list(r['size']),
                    hf_energy={k: round(v, 4) for k, v in r['hf'].items()}) for r in rows]
    Path(out).with_suffix('.json').write_text(json.dumps(
        dict(image=image, config=config, checkpoint=checkpoint, radius=radius,
             mixers=summary), indent=2))
    return summary
