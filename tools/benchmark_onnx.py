"""Batch-1 latency in ONNX Runtime on the CPU: TinyViM and its peers exported the same
way, timed side by side in one process.

Examples::

    python tools/benchmark_onnx.py                              # S and its peers, 2 threads
    python tools/benchmark_onnx.py --models tinyvim-b timm:repvit_m1_5 timm:fastvit_sa12 \\
        timm:efficientformerv2_s2
    python tools/benchmark_onnx.py --threads 1 --clock cpu     # repeatable on a busy machine
"""
import argparse
import json
import tempfile
from pathlib import Path

from tinyvim_mm.benchmark.onnx_latency import latency_table, onnx_latency
from tinyvim_mm.benchmark.presets import load_top1

PEERS_S = ['tinyvim-s', 'timm:repvit_m1_1', 'timm:efficientvit_b1', 'timm:mobileone_s1',
           'timm:efficientformer_l1']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=PEERS_S,
                        help="tinyvim-{s,b,l} or timm:NAME (default: S and its peers)")
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
        rows = onnx_latency(args.models, out_dir, reference, args.threads, args.clock,
                            args.rounds, args.calls, args.img_size)
    top1 = {k: v['top1'] for k, v in load_top1().items()}
    print(f'onnxruntime, batch 1, {args.img_size}², {args.threads} thread(s), {args.clock} clock')
    print(latency_table(rows, top1), end='')
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
