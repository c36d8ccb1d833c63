"""Draw the TinyViM architecture diagram of the README (docs/figures/architecture.png).

The figure follows tinyvim_mm's implementation (and the released checkpoints): the
macro layout with its stage widths/depths, the Local block, the TinyViM block and its
Laplace mixer (frequency split, pooled 4-direction selective scan, Laplace residual,
depth-wise conv branch). Numbers come from :class:`tinyvim_mm.models.TinyViM`.

    python tools/misc/draw_architecture.py [--out docs/figures/architecture.png]
"""
import argparse
from pathlib import Path
from typing import Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from tinyvim_mm.models import TinyViM  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

COLORS = dict(stem='#d9d9d9', stage='#fce5cd', local='#cfe2f3', tinyvim='#f9cb9c', down='#eeeeee',
              head='#d9ead3', low='#fde9a9', high='#c9daf8', op='#ffffff', frame='#f7f7f7')
PARAMS_M = {'s': 5.68, 'b': 11.13, 'l': 31.87}  # without the distillation head (the published model)
GMACS = {'s': 0.9, 'b': 1.5, 'l': 4.7}


def box(ax: Axes, xy: Tuple[float, float], wh: Tuple[float, float], text: str,
        color: str = COLORS['op'], size: float = 8.5, bold: bool = False,
        dashed: bool = False) -> Tuple[float, float, float, float]:
    """A rounded box with centred text; returns ``(x, y, w, h)``."""
    (x, y), (w, h) = xy, wh
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02,rounding_size=0.6',
                                fc=color, ec='#444444', lw=1.0, ls='--' if dashed else '-'))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center', fontsize=size,
            fontweight='bold' if bold else 'normal', wrap=True)
    return x, y, w, h


def arrow(ax: Axes, start: Tuple[float, float], end: Tuple[float, float],
          text: str = '', rad: float = 0.0) -> None:
    """An arrow from ``start`` to ``end`` with an optional label at its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle='-|>', mutation_scale=10, lw=1.0,
                                 color='#333333', connectionstyle=f'arc3,rad={rad}'))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.6, text, ha='center',
                va='bottom', fontsize=7.5, color='#333333')


def frame(ax: Axes, xy: Tuple[float, float], wh: Tuple[float, float], title: str) -> None:
    """A titled background panel."""
    ax.add_patch(FancyBboxPatch(xy, *wh, boxstyle='round,pad=0.2,rounding_size=1.0',
                                fc=COLORS['frame'], ec='#999999', lw=0.8))
    ax.text(xy[0] + 0.8, xy[1] + wh[1] - 0.8, title, ha='left', va='top', fontsize=10,
            fontweight='bold')


def draw_macro(ax: Axes) -> None:
    """Stem, four stages, downsampling and the task heads."""
    arch = TinyViM.arch_settings['s']
    ratios, pools = TinyViM.default_arch['low_ratios'], TinyViM.default_arch['pool_sizes']
    frame(ax, (1, 38), (98, 21), 'TinyViM (widths / depths of S; B and L in the table)')
    y, h = 46.5, 7.5
    box(ax, (2.5, y), (7, h), 'image\nH×W×3', COLORS['down'])
    box(ax, (11.5, y), (9, h), 'stem\n2 × (Conv3×3 s2\n+ BN + GELU)', COLORS['stem'])
    arrow(ax, (9.5, y + h / 2), (11.5, y + h / 2))
    x, w = 22.5, 10.8
    for i in range(4):
        if i:
            box(ax, (x + 1, y + 1.5), (3.6, h - 3), 'Conv\n3×3 s2\n+BN', COLORS['down'], size=7)
            arrow(ax, (x, y + h / 2), (x + 1, y + h / 2))
            arrow(ax, (x + 4.6, y + h / 2), (x + 5.6, y + h / 2))
            x += 5.6
        text = (f'stage {i + 1}: H/{4 * 2**i} × {arch["widths"][i]}\n'
                f'{arch["depths"][i] - 1 - (i == 2)} × Local\n+ {1 + (i == 2)} × TinyViM\n'
                f'r = {ratios[i]:g}, k = {pools[i]}')
        box(ax, (x, y), (w, h), text, COLORS['stage'], size=8)
        if i == 0:
            arrow(ax, (20.5, y + h / 2), (x, y + h / 2))
        arrow(ax, (x + w / 2, y), (x + w / 2, 43.5), f'norm{2 * i}')
        x += w
    box(ax, (22.5, 39.5), (x - 22.5, 4), 'dense outputs at 1/4, 1/8, 1/16, 1/32 → FPN → '
        'Mask R-CNN (mmdet) / Semantic FPN (mmseg)', COLORS['head'], size=8.5)
    box(ax, (85, 39.5), (13, 13.5), 'classification\n(mmpretrain):\nnorm6 → GAP →\nhead + '
        'dist_head\n(train: both losses,\ntest: mean logits)', COLORS['head'], size=7.8)
    arrow(ax, (x, y + h / 2), (85, y + h / 2))


def draw_local_block(ax: Axes) -> None:
    frame(ax, (1, 1), (21, 35), 'Local block (× d−1)')
    cx = 11.5
    box(ax, (5, 29), (13, 3), 'x  (B, C, H, W)', COLORS['down'])
    box(ax, (4, 22), (15, 4.5), 'RepDW 3×3\nBN(DWConvBN3×3 + DW1×1 + x)', COLORS['local'], 7.5)
    box(ax, (4, 14), (15, 5.5), 'ConvFFN\n1×1 (C→4C) → GELU\n→ 1×1 (4C→C)', COLORS['local'], 7.5)
    box(ax, (4, 8.5), (15, 3), '× layer_scale (C,1,1)', COLORS['op'], 7.5)
    box(ax, (8.5, 3), (6, 3), '+', COLORS['op'], 11, bold=True)
    arrow(ax, (cx, 29), (cx, 26.5))
    arrow(ax, (cx, 22), (cx, 19.5))
    arrow(ax, (cx, 14), (cx, 11.5))
    arrow(ax, (cx, 8.5), (cx, 6))
    arrow(ax, (5, 30.5), (8.5, 4.5), rad=0.45)


def draw_tinyvim_block(ax: Axes) -> None:
    frame(ax, (23, 1), (19, 35), 'TinyViM block (last of a stage)')
    cx = 32.5
    box(ax, (26, 29), (13, 3), 'x', COLORS['down'])
    box(ax, (25.5, 22), (14, 4.5), 'Laplace mixer\n(SS2D, right)', COLORS['tinyvim'], 8, bold=True)
    box(ax, (29.5, 17.5), (6, 2.8), '+', COLORS['op'], 11, bold=True)
    box(ax, (25.5, 10), (14, 4.5), 'ConvFFN\n1×1 → GELU → 1×1', COLORS['local'], 7.5)
    box(ax, (29.5, 3), (6, 2.8), '+', COLORS['op'], 11, bold=True)
    arrow(ax, (cx, 29), (cx, 26.5))
    arrow(ax, (cx, 22), (cx, 20.3))
    arrow(ax, (cx, 17.5), (cx, 14.5))
    arrow(ax, (cx, 10), (cx, 5.8))
    arrow(ax, (26, 30.5), (29.5, 18.9), rad=0.4)
    arrow(ax, (29.5, 16.8), (29.5, 4.4), rad=0.35)
    ax.text(33.3, 7.3, 'no layer scale;\nDropPath on both', fontsize=7, color='#555555')


def draw_mixer(ax: Axes) -> None:
    frame(ax, (43, 1), (56, 35), 'Laplace mixer: frequency split + pooled Mamba (SS2D)')
    box(ax, (45, 29), (21, 3), 'in_proj ConvBN 1×1', COLORS['op'], 8)
    box(ax, (67.5, 29), (29.5, 3), 'Rep inception: ½C DW 7×1 ‖ ½C DW 1×7 → SiLU', COLORS['op'], 8)
    arrow(ax, (66, 30.5), (67.5, 30.5))
    # low-frequency branch
    box(ax, (45, 22.5), (23, 4), 'low part: r·C channels\n(r = ¼, ½, ½, ¾ by stage)',
        COLORS['low'], 8)
    box(ax, (45, 16.5), (10.5, 4), 'AvgPool k\n(k = 8, 4, 2, 1:\nscan at 1/32)', COLORS['low'], 7)
    box(ax, (57.5, 16.5), (10.5, 4), 'SS2D: 4-direction\nselective scan\n+ LayerNorm',
        COLORS['tinyvim'], 7, bold=True)
    box(ax, (57.5, 10.5), (10.5, 4), 'bilinear\nupsample ×k', COLORS['low'], 7.5)
    box(ax, (45, 10.5), (10.5, 4), 'Laplace residual\nlow − up(pool(low))\n(high freq.)',
        COLORS['high'], 7)
    box(ax, (52.5, 5), (8, 3), '+', COLORS['op'], 11, bold=True)
    arrow(ax, (56.5, 22.5), (50.25, 20.5))
    arrow(ax, (55.5, 18.5), (57.5, 18.5))
    arrow(ax, (62.75, 16.5), (62.75, 14.5))
    arrow(ax, (50.25, 16.5), (50.25, 14.5))
    arrow(ax, (50.25, 10.5), (54.5, 8))
    arrow(ax, (62.75, 10.5), (58.5, 8))
    # high-frequency branch
    box(ax, (72, 22.5), (23, 4), 'high part: (1 − r)·C channels', COLORS['high'], 8)
    box(ax, (75.5, 14), (16, 4.5), 'local_conv: RepDW 3×3\n(cheap, keeps detail)',
        COLORS['high'], 7.5)
    arrow(ax, (83.5, 22.5), (83.5, 18.5))
    # merge
    box(ax, (66, 2.2), (30, 3.6), 'concat(low, high) → out_proj ConvBN 1×1', COLORS['op'], 8)
    arrow(ax, (60.5, 6.5), (66, 4))
    arrow(ax, (83.5, 14), (83.5, 5.8))
    arrow(ax, (80, 29), (60, 26.5))
    arrow(ax, (84, 29), (84, 26.5))
    ax.text(69.5, 11.5, 'stage 4 (k = 1): no pooling,\nno residual — scan at full size',
            fontsize=7, color='#555555')


def draw_variants(ax: Axes) -> None:
    rows = ['       widths              depths       params    GMACs']
    for name in ('s', 'b', 'l'):
        arch = TinyViM.arch_settings[name]
        rows.append(f'{name.upper()}   {str(arch["widths"]):<18}  {str(arch["depths"]):<12} '
                    f'{PARAMS_M[name]:>5.2f} M  {GMACS[name]:>4}')
    ax.text(99, 58.2, '\n'.join(rows), ha='right', va='top', fontsize=7.2, family='monospace',
            bbox=dict(boxstyle='round', fc='white', ec='#999999'))


def draw(out: str) -> None:
    fig, ax = plt.subplots(figsize=(15, 9.2))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 60)
    ax.axis('off')
    draw_macro(ax)
    draw_variants(ax)
    draw_local_block(ax)
    draw_tinyvim_block(ax)
    draw_mixer(ax)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(REPO / 'docs' / 'figures' / 'architecture.png'))
    args = parser.parse_args()
    draw(args.out)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
