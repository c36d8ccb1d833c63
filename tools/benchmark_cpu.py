"""Batch-1 latency on the CPU, in ONNX Runtime (TinyViM and its peers exported the same
way) or PyTorch eager, timed side by side in one process.

Examples::

    python tools/benchmark_cpu.py                             # ONNX Runtime, S and peers, 2 threads
    python tools/benchmark_cpu.py --models tinyvim-b timm:repvit_m1_5 timm:fastvit_sa12 \\
        timm:efficientformerv2_s2
    python tools/benchmark_cpu.py --threads 1 --clock cpu     # repeatable on a busy machine
    # PyTorch: the folded model, the inference form (channels-last backbone) and a peer
    python tools/benchmark_cpu.py --runtime torch --models tinyvim-s tinyvim-s:fast \\
        timm:repvit_m1_1 --reference timm:repvit_m1_1
"""
import argparse
import json
import tempfile
from pathlib import Path

from tinyvim_mm.benchmark.cpu_latency import RUNTIMES, cpu_latency, latency_table
from tinyvim_mm.benchmark.presets import load_top1

PEERS_S = ['tinyvim-s', 'timm:repvit_m1_1', 'timm:efficientvit_b1', 'timm:mobileone_s1',
           'timm:efficientformer_l1']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runtime', choices=RUNTIMES, default='onnxruntime')
    parser.add_argument('--models', nargs='+', default=PEERS_S,
                        help='tinyvim-{s,b,l} or timm:NAME (default: S and its peers); '
                        'with --runtime torch also tinyvim-{s,b,l}:fast, the inference form')
    parser.add_argument('--channels-last', action='store_true',
                        help='--runtime torch: model and input in channels-last memory format')
    parser.add_argument('--reference', help='ratios against this model (default: the second, '
                        'the first peer)')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads')
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help="'cpu': CPU time of the calling thread (needs --threads 1)")
    parser.add_argument('--rounds', type=int, default=30)
    parser.add_argument('--calls', type=int, default=3, help='calls per model and round')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--out-dir', type=Path, help='where the .onnx files go (default: temp)')
    parser.add_argument('--json', type=Path, help='also write the rows here')
    args = parser.parse_args()
    reference = args.reference or args.models[min(1, len(args.models) - 1)]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = cpu_latency(args.models, out_dir, reference, args.threads, args.clock,
                           args.rounds, args.calls, args.img_size, args.runtime,
                           args.channels_last)
    top1 = {k: v['top1'] for k, v in load_top1().items()}
    layout = ', channels-last' if args.channels_last else ''
    print(f'{args.runtime}{layout}, batch 1, {args.img_size}², {args.threads} thread(s), '
          f'{args.clock} clock')
    print(latency_table(rows, top1), end='')
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
