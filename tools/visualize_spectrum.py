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
figure (``FIG.json``). Library code: :mod:`tinyvim_mm.analysis.spectrum`.

Examples::

    python tools/visualize_spectrum.py IMAGE --arch s --out spectrum.png   # random init
    python tools/visualize_spectrum.py IMAGE --config configs/tinyvim_s_8xb128_in1k.py \\
        --checkpoint checkpoints/tinyvim-s_in1k.pth --out spectrum.png
"""
import argparse
from typing import List, Optional

from tinyvim_mm.analysis.spectrum import plot_spectra


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    summary = plot_spectra(args.image, args.out, args.config, args.arch, args.checkpoint,
                           args.size, args.radius, args.min_size)
    for mixer in summary:
        hf = ', '.join(f'{k} {v:.2f}' for k, v in mixer['hf_energy'].items())
        print(f"stage {mixer['stage']} {mixer['name']} {tuple(mixer['size'])}: {hf}")
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
