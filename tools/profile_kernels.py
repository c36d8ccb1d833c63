"""Profile a model: kernel time by category and the top kernels (tinyvim_mm.benchmark.profile).

Examples::

    # TinyViM-B's fast inference form at the detection size, fp16, channels-last
    python tools/profile_kernels.py configs/mask_rcnn_tinyvim_b.py --fast --batch 2 \\
        --img-size 800 1333 --dtype fp16 --channels-last
    # the same backbone with ResNet-50 for comparison
    python tools/profile_kernels.py mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py \\
        --batch 2 --img-size 800 1333 --dtype fp16 --channels-last
    # a classifier's training step (forward + backward), by scan backend
    python tools/profile_kernels.py tinyvim-b --backward --batch 2 --img-size 512 \\
        --scan-backend triton
    # compiled (inductor's kernels: where a compiled model's time goes)
    python tools/profile_kernels.py tinyvim-s --fast --batch 1024 --dtype fp16 \\
        --channels-last --compile
    # a config's whole training loop through MMEngine's Runner (in-memory samples):
    # kernels, and the host functions that take the time
    python tools/profile_kernels.py configs/tinyvim_s_8xb128_in1k_noteacher.py --runner
    # ... and the host's whole cProfile statistics, for `python -m pstats det.pstats`
    python tools/profile_kernels.py configs/mask_rcnn_tinyvim_b.py --runner --pstats det.pstats

A toolbox config is profiled as its backbone alone (with ``--runner``: its training
loop); ``tinyvim-{s,b,l}``, ``timm:NAME`` and mmpretrain configs as classifiers. On the
CPU the operators' self time is reported.
"""
import argparse
import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import torch
from mmengine.config import DictAction

from tinyvim_mm.benchmark import Treatment, parse_model
from tinyvim_mm.benchmark.measure import Context, toolbox_model
from tinyvim_mm.benchmark.models import FAST_DEFAULTS, build_classifier
from tinyvim_mm.benchmark.profile import (hotspots_markdown, kernel_profile, profile_markdown,
                                          shares)
from tinyvim_mm.benchmark.runner_train import TrainVariant, runner_train
from tinyvim_mm.benchmark.toolbox import load_config, scope_of
from tinyvim_mm.benchmark.treatments import inference_step, place, place_input
from tinyvim_mm.models.layers import SelectiveScan
from tinyvim_mm.ops import check_backend


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('model', help='tinyvim-{s,b,l}[:fast], timm:NAME or a config')
    parser.add_argument('--fast', action='store_true', help="a config's TinyViM backbone in "
                        'its fast inference form (optimize_for_inference)')
    parser.add_argument('--scan-backend', default=None,
                        help="TinyViM's selective-scan backend (default: the model's)")
    parser.add_argument('--backward', action='store_true',
                        help='forward + backward of the training form (no folding)')
    parser.add_argument('--runner', action='store_true', help="a config's training loop "
                        "through MMEngine's Runner (tinyvim_mm.benchmark.runner_train)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='with --runner: overrides of the config, key=value')
    parser.add_argument('--batch', type=int, default=None,
                        help="default 1; with --runner the config's batch per GPU")
    parser.add_argument('--img-size', type=int, nargs='+', default=None,
                        help="H [W]; default 224; with --runner the config's training size")
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'fp16', 'bf16'])
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--no-reparameterize', action='store_true', help='keep the training form')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the model (inference; default mode, no CUDA graphs)')
    parser.add_argument('--compile-backend', default='inductor',
                        help="torch.compile's backend with --compile")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--top', type=int, default=15, help='kernels listed')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', type=Path, default=None, help='also write the result here')
    parser.add_argument('--pstats', type=Path, default=None,
                        help="with --runner: write the host's whole cProfile statistics here "
                        "(read with python -m pstats)")
    return parser.parse_args(argv)


def build(args: argparse.Namespace, treatment: Treatment,
          device: torch.device) -> torch.nn.Module:
    """The profiled module: a toolbox config's backbone, else a classifier."""
    spec = parse_model(args.model)
    if args.fast and args.backward:
        raise SystemExit('error: --fast is an inference form; drop --backward')
    if args.compile and args.backward:
        raise SystemExit('error: --compile profiles inference; drop --backward')
    cfg = load_config(spec.target) if spec.kind == 'config' else None
    if cfg is not None and scope_of(cfg) != 'mmpretrain':
        spec = dataclasses.replace(spec, optimize=dict(FAST_DEFAULTS) if args.fast else None)
        model = toolbox_model(Context(device), spec, treatment, cfg).backbone
    else:
        if args.fast:
            if spec.kind != 'tinyvim':
                raise SystemExit(f'error: --fast applies to TinyViM models, not {args.model}')
            spec = parse_model(f'{args.model}:fast')
        model = build_classifier(spec, treatment.reparameterize, train=args.backward)
    if args.scan_backend:
        scans = [m for m in model.modules() if isinstance(m, SelectiveScan)]
        if not scans:
            raise SystemExit(f'error: --scan-backend given, but {args.model} has no TinyViM')
        for scan in scans:
            scan.backend = check_backend(args.scan_backend)
    model.train(args.backward)  # some backbones' train() returns None
    return model


def profile_runner(args: argparse.Namespace, device: torch.device) -> dict:
    """The training loop of a config through the Runner: 3 warm-up and 2 timed
    iterations, then ``--repeats`` profiled ones."""
    spec = parse_model(args.model)
    if spec.kind != 'config':
        raise SystemExit(f'error: --runner takes a config, not {args.model}')
    if args.fast or args.backward or args.scan_backend or args.compile:
        raise SystemExit('error: --runner trains the config as it is; give changes with '
                         '--cfg-options (e.g. model.backbone.scan_backend=triton, '
                         'fast_training.compile=reduce-overhead)')
    size = None if args.img_size is None else (args.img_size * 2)[:2]
    record = runner_train(Context(device), spec, TrainVariant('cli', dict(args.cfg_options)),
                          iters=2, warmup=3, batch=args.batch, img_size=size,
                          profile=args.repeats,
                          profile_stats=str(args.pstats) if args.pstats else None)
    result = record.pop('profile')
    what = (f'training loop (Runner), batch {record["batch"]}, '
            f'{"x".join(map(str, record["img_size"]))}, {record["ms"]:.1f} ms per iteration '
            'unprofiled')
    result.update(model=args.model, what=what, run=record)
    print(profile_markdown(result, f'{args.model}, {what}'))
    print('\n' + hotspots_markdown(result['host']))
    return result


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    if args.runner:
        result = profile_runner(args, device)
        _write(args.json, result)
        return result
    if args.pstats:
        raise SystemExit('error: --pstats profiles the host in the training loop; add --runner')
    args.batch = args.batch or 1
    size = ((args.img_size or [224]) * 2)[:2]
    treatment = Treatment(dtype=args.dtype, channels_last=args.channels_last,
                          reparameterize=not (args.no_reparameterize or args.backward),
                          compile=args.compile, compile_backend=args.compile_backend)
    model = place(build(args, treatment, device), treatment, device)
    x = place_input(torch.randn(args.batch, 3, *size), treatment, device)
    if args.backward:
        scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == 'fp16')

        def step() -> None:
            with treatment.autocast(device):
                out = model(x)
            loss = sum(o.float().mean() for o in (out if isinstance(out, (list, tuple))
                                                  else [out]))
            scaler.scale(loss).backward()
    else:
        step = inference_step(model, x, treatment, device)
    result = kernel_profile(step, device, args.repeats, args.top)
    what = ('forward + backward' if args.backward else 'forward') + \
        f', {args.batch}x3x{size[0]}x{size[1]}, {treatment.label}'
    result.update(model=args.model, fast=args.fast, scan_backend=args.scan_backend, what=what)
    print(profile_markdown(result, f'{args.model}{" (fast)" if args.fast else ""}, {what}'))
    print(f'\nscan share: {100 * shares(result, ["scan"]):.1f} %')
    _write(args.json, dataclasses.asdict(treatment) | result)
    return result


def _write(path: Optional[Path], result: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str))


if __name__ == '__main__':
    main()
