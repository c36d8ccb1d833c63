"""Time the distillation teacher as training runs it: ``DistillImageClassifier.teacher_logits``
under each ``teacher_fast`` setting, one after another in one process, on the same batch;
ms per batch (median of single calls, after the warm-up that compiles and captures), the
first call's seconds (compilation), and the fraction of images whose hard label (argmax)
equals the float32 teacher's.

Examples::

    python tools/misc/benchmark_teacher.py --device cuda                 # RegNetY-16GF, 128
    python tools/misc/benchmark_teacher.py --device cuda --variants default 'not compiled'
    python tools/misc/benchmark_teacher.py --device cuda --checkpoint regnety_160-a5fe3fc4.pth

Without ``--checkpoint`` the teacher has random weights (the timings are the same; with
random weights and noise images the logits are near ties, so the agreement understates a
trained teacher's). ``teacher_fast`` applies on CUDA only: on the CPU every variant runs
the plain float32 teacher.
"""
import argparse
import inspect
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from tinyvim_mm.models.classifiers.distill_classifier import DistillImageClassifier

#: ``teacher_fast`` settings by name; ``default`` is DistillImageClassifier's.
VARIANTS: Dict[str, Optional[dict]] = {
    'fp32': None,
    'fp16': dict(dtype='float16', channels_last=False, compile=False, cuda_graphs=False),
    'fp16 channels-last': dict(dtype='float16', channels_last=True, compile=False,
                               cuda_graphs=False),
    'not compiled': dict(dtype='float16', channels_last=False, compile=False,
                         cuda_graphs=True),
    'compiled channels-last': dict(dtype='float16', channels_last=True, compile=True,
                                   cuda_graphs=True),
    'default': inspect.signature(DistillImageClassifier).parameters['teacher_fast'].default,
}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--model', default='regnety_160', help='timm model name')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--checkpoint', default=None, help="the teacher's weights")
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        help=f'teacher_fast settings by name ({", ".join(VARIANTS)})')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed calls (the 2nd captures the CUDA graph)')
    parser.add_argument('--calls', type=int, default=20, help='timed calls per variant')
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f'unknown variants {unknown}; choose from {list(VARIANTS)}')
    if args.calls < 1 or args.warmup < 0 or args.batch < 1:
        parser.error('--calls and --batch must be >= 1, --warmup >= 0')
    return args


def build(args: argparse.Namespace, fast: Optional[dict], device: torch.device,
          state: Optional[dict] = None):
    """A classifier holding the teacher (a minimal student: only the teacher runs), its
    weights ``state`` if given, else ``--checkpoint`` (loaded strictly) or random,
    converted to channels-last as training converts it."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    model = DistillImageClassifier(
        backbone=dict(type='TinyViM', arch=dict(widths=(8, 16, 24, 32), depths=(1, 1, 1, 1)),
                      out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='DistillClsHead', num_classes=args.num_classes, in_channels=32),
        teacher=dict(type='TimmClassifier', model_name=args.model,
                     num_classes=args.num_classes),
        teacher_checkpoint=args.checkpoint or 'random weights', teacher_fast=fast).to(device)
    if state is not None:
        model.teacher.load_state_dict(state)
        model._teacher_loaded = True
    elif args.checkpoint:
        model.load_teacher()
    else:
        model._teacher_loaded = True  # random weights stand in for a checkpoint
    # as FastTrainingRunner converts the classifier (fast_training.channels_last, the
    # ImageNet configs' default): the teacher's own layout must survive it
    return model.to(memory_format=torch.channels_last)


def time_variant(args: argparse.Namespace, fast: Optional[dict], state: dict, x: torch.Tensor,
                 exact: torch.Tensor) -> dict:
    """One ``teacher_fast`` form: ms per call, first call's seconds, agreement with fp32."""
    from tinyvim_mm.benchmark.timing import seconds_per_call, synchronize
    model = build(args, fast, x.device, state)
    begin = time.perf_counter()
    model.teacher_logits(x)
    synchronize(x.device)
    first = time.perf_counter() - begin
    for _ in range(args.warmup):
        model.teacher_logits(x)
    times = [seconds_per_call(lambda: model.teacher_logits(x), x.device, 1)
             for _ in range(args.calls)]
    labels = model.teacher_logits(x).argmax(1)  # as training gets them (replayed)
    return dict(teacher_fast=fast, ms=statistics.median(times) * 1e3, min_ms=min(times) * 1e3,
                first_call_s=first, agreement=float((labels == exact).float().mean()))


def main(argv: Optional[List[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # as the ImageNet configs train
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, generator=gen).to(device)
    reference = build(args, None, device)
    state = reference.teacher.state_dict()
    exact = reference.teacher_logits(x).argmax(1)
    del reference
    results: Dict[str, dict] = {}
    for name in args.variants:
        results[name] = time_variant(args, VARIANTS[name], state, x, exact)
        if device.type == 'cuda':
            torch.cuda.empty_cache()  # the variant's graphs and caches are gone with it
    where = 'teacher_fast as given' if device.type == 'cuda' else 'CPU: the plain fp32 teacher'
    print(f'{args.model}, batch {args.batch}, {args.img_size}x{args.img_size}, on {device} '
          f'({where}); ms per batch, median of {args.calls} calls\n')
    print('| variant | teacher_fast | ms | min ms | first call s | argmax = fp32 |')
    print('|---|---|---|---|---|---|')
    for name, r in results.items():
        print(f'| {name} | {r["teacher_fast"]} | {r["ms"]:.2f} | {r["min_ms"]:.2f} | '
              f'{r["first_call_s"]:.1f} | {r["agreement"]:.4f} |')
    if args.json:
        args.json.write_text(json.dumps(dict(config={k: str(v) for k, v in vars(args).items()},
                                             results=results), indent=2))
    return results


if __name__ == '__main__':
    main()
