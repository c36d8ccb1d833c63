"""Train a TinyViM config with its toolbox (mmpretrain, mmdet or mmseg): the config's
``default_scope`` decides, MMEngine's ``Runner`` runs the loop.

Examples::

    python tools/train.py configs/fpn_tinyvim_s_toy_ade.py
    python tools/train.py configs/mask_rcnn_tinyvim_b.py --amp --work-dir work_dirs/mrcnn_b
    python tools/train.py CONFIG --resume               # the latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_4000.pth
    bash tools/dist_train.sh CONFIG 8                   # 8 GPUs, --launcher pytorch

The runner set-up it shares with ``tools/test.py`` is :mod:`tinyvim_mm.engine.runner`.
"""
import argparse
import os
from typing import List, Optional

from mmengine.config import Config

from tinyvim_mm.checkpoint import use_safe_loader
from tinyvim_mm.engine.runner import (add_common_args, add_hook, apply_launcher, build_runner,
                                      default_work_dir, enable_amp, keep_checkpoint_seed)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a TinyViM model (mmpretrain / mmdet / mmseg config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: the config\'s work_dir or ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (Amp* version of the optim wrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr linearly with the total batch size '
                        '(auto_scale_lr.base_batch_size of the config)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the latest checkpoint of the '
        'work dir (weights, optimizer, schedulers, iteration, RNG states)')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also log scalars to TensorBoard (WORK_DIR/TIMESTAMP/vis_data)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (as mmdet's / mmpretrain's train.py)."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = default_work_dir(cfg, args.config, args.work_dir)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) '
                               f'in the config {args.config}')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('resume'):
        keep_checkpoint_seed(cfg)
    if args.tensorboard:
        backends = list(cfg.visualizer.get('vis_backends') or [])
        if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
        cfg.visualizer.vis_backends = backends
    # Checkpoints carry the RNG states; a resumed run continues exactly, and a
    # checkpoint that does not fit the model is refused.
    add_hook(cfg, dict(type='CheckpointGuardHook'))
    apply_launcher(cfg, args.launcher)
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    use_safe_loader()
    cfg = merge_args(Config.fromfile(args.config), args)
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
