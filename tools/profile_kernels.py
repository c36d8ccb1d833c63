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

A toolbox config is profiled as its backbone alone; ``tinyvim-{s,b,l}``, ``timm:NAME`` and
mmpretrain configs as classifiers. On the CPU the operators' self time is reported.
"""
import argparse
import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import torch

from tinyvim_mm.benchmark import Treatment, parse_model
from tinyvim_mm.benchmark.measure import Context, toolbox_model
from tinyvim_mm.benchmark.models import FAST_DEFAULTS, build_classifier
from tinyvim_mm.benchmark.profile import kernel_profile, profile_markdown, shares
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
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--img-size', type=int, nargs='+', default=[224], help='H [W]')
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'fp16', 'bf16'])
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--no-reparameterize', action='store_true', help='keep the training form')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--top', type=int, default=15, help='kernels listed')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', type=Path, default=None, help='also write the result here')
    return parser.parse_args(argv)


def build(args: argparse.Namespace, treatment: Treatment,
          device: torch.device) -> torch.nn.Module:
    """The profiled module: a toolbox config's backbone, else a classifier."""
    spec = parse_model(args.model)
    if args.fast and args.backward:
        raise SystemExit('error: --fast is an inference form; drop --backward')
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


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    size = args.img_size * 2 if len(args.img_size) == 1 else args.img_size[:2]
    treatment = Treatment(dtype=args.dtype, channels_last=args.channels_last,
                          reparameterize=not (args.no_reparameterize or args.backward))
    torch.backends.cudnn.benchmark = True
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
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dataclasses.asdict(treatment) | result, indent=2))
    return result


if __name__ == '__main__':
    main()
