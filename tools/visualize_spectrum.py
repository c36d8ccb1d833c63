"""Frequency analysis of TinyViM's Laplace mixers (the paper's Fig. 2 / 4).

Runs one image through a TinyViM backbone and plots, for every Laplace mixer
whose maps are at least ``--min-size`` pixels, the log-amplitude 2-D FFT
spectra (``fftshift``, averaged over channels) of: the mixer input, the
low-frequency channels before the Mamba branch, the Mamba (scan) branch, the
Laplace residual, the low branch after the Mamba (scan + residual), the
high-frequency depth-wise conv branch and the mixer output. Each panel gives
the relative high-frequency energy: the share of the (mean-removed) energy
outside a centred disc of ``--radius`` times the Nyquist frequency
(``radius * min(H, W) / 2`` bins). The numbers are also written next to the
figure (``FIG.json``).

Examples::

    python tools/visualize_spectrum.py IMAGE --arch s --out spectrum.png   # random init
    python tools/visualize_spectrum.py IMAGE --config configs/tinyvim_s_8xb128_in1k.py \\
        --checkpoint checkpoints/tinyvim-s_in1k.pth --out spectrum.png
"""
import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import MMLogger

from tinyvim_mm.analysis.spectrum import (collect_mixer_maps, high_frequency_ratio,
                                          log_amplitude_spectrum)
from tinyvim_mm.models import TinyViM

PANELS = [  # (map key, panel title)
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
    tensor."""
    import mmcv
    bgr = mmcv.imread(path)
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='input image')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--config', help='a TinyViM config (classification, detection '
                       'or segmentation): arch and normalisation')
    group.add_argument('--arch', default='s', choices=('s', 'b', 'l'),
                       help='backbone size without --config (default: s)')
    parser.add_argument('--checkpoint', help='weights (default: random init)')
    parser.add_argument('--out', default='spectrum.png', help='output figure (PNG)')
    parser.add_argument('--size', type=int, default=224, help='shorter image side fed in')
    parser.add_argument('--radius', type=float, default=0.25,
                        help='low-frequency disc radius, in units of the Nyquist frequency')
    parser.add_argument('--min-size', type=int, default=8,
                        help='skip mixers whose maps are smaller than this')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    summary = plot_spectra(args.image, args.out, args.config, args.arch, args.checkpoint,
                           args.size, args.radius, args.min_size)
    for mixer in summary:
        hf = ', '.join(f'{k} {v:.2f}' for k, v in mixer['hf_energy'].items())
        print(f"stage {mixer['stage']} {mixer['name']} {tuple(mixer['size'])}: {hf}")
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
