"""Train a TinyViM config with its toolbox (mmpretrain, mmdet or mmseg): the config's
``default_scope`` decides, MMEngine's ``Runner`` runs the loop.

Examples::

    python tools/train.py configs/fpn_tinyvim_s_toy_ade.py
    python tools/train.py configs/mask_rcnn_tinyvim_b.py --amp --work-dir work_dirs/mrcnn_b
    python tools/train.py CONFIG --resume               # the latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_4000.pth
    bash tools/dist_train.sh CONFIG 8                   # 8 GPUs, --launcher pytorch

``tools/test.py`` imports the helpers it shares with this file (launcher, runner, hooks).
"""
import argparse
import logging
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
GUARD_HOOK = 'CheckpointGuardHook'  # tinyvim_mm.utils.safe_load


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by train.py and test.py."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs merged into the config, e.g. '
        'train_cfg.max_iters=100 "model.neck.in_channels=[48,64,168,224]"')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


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


def default_work_dir(cfg: Config, config_file: str, work_dir: Optional[str]) -> str:
    """CLI > the config's ``work_dir`` > ``./work_dirs/CONFIG_NAME``."""
    if work_dir is not None:
        return work_dir
    if cfg.get('work_dir') is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_file))[0])


def add_hook(cfg: Config, hook: dict) -> None:
    """Append ``hook`` to ``custom_hooks`` unless a hook of its type is there."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == hook['type'] for h in hooks):
        hooks.append(hook)
    cfg.custom_hooks = hooks


def apply_launcher(cfg: Config, launcher: str) -> None:
    """Set the launcher; without CUDA, make ``--launcher pytorch`` run on CPU processes.

    MMEngine's ``init_dist`` selects a GPU per process and its DDP wrapper passes
    ``device_ids``; torch's SyncBatchNorm needs GPUs. Without CUDA this initialises the
    process group with gloo, wraps the model with ``device_ids=None`` and uses plain
    BatchNorm (``sync_bn`` and ``SyncBN`` norm configs): a smoke test of the
    multi-process path (``tools/dist_train.sh CONFIG 2`` on a CPU machine). GPU runs are
    left as they are.
    """
    cfg.launcher = launcher
    if launcher != 'pytorch':
        return
    import torch
    import torch.distributed as dist
    from mmengine.logging import print_log
    if torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    reverted = _sync_bn_to_bn(cfg.model)
    if cfg.get('sync_bn') is not None or reverted:
        print_log(f'No CUDA: distributed on CPU over gloo; sync_bn={cfg.get("sync_bn")!r} and '
                  f'{reverted} SyncBN norm configs replaced by BN (SyncBatchNorm needs GPUs): '
                  'each process normalises its own batch.', logger='current',
                  level=logging.WARNING)
        cfg.sync_bn = None


def _sync_bn_to_bn(node) -> int:
    """Replace ``type='SyncBN'`` by ``'BN'`` in a config tree; returns the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        count += sum(_sync_bn_to_bn(value) for value in node)
    return count


def enable_amp(cfg: Config) -> None:
    """Switch the optim wrapper to its mixed-precision version (``OptimWrapper`` ->
    ``AmpOptimWrapper``, ``AGCOptimWrapper`` -> ``AmpAGCOptimWrapper``)."""
    from mmengine.registry import OPTIM_WRAPPERS
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if not wrapper_type.startswith('Amp'):
        amp_type = 'AmpOptimWrapper' if wrapper_type == 'OptimWrapper' else f'Amp{wrapper_type}'
        if OPTIM_WRAPPERS.get(amp_type) is None:
            raise RuntimeError(f'--amp: the config\'s optim wrapper {wrapper_type!r} has no '
                               f'mixed-precision version {amp_type!r}')
        cfg.optim_wrapper.type = amp_type
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


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
    # checkpoint that does not fit the model is refused (tinyvim_mm.utils.safe_load).
    add_hook(cfg, dict(type=GUARD_HOOK))
    apply_launcher(cfg, args.launcher)
    return cfg


def keep_checkpoint_seed(cfg: Config) -> None:
    """Resume with the checkpoint's seed when the config fixes none: samplers and data
    workers are seeded before the checkpoint is read, so a fresh random seed would change
    the data order of the continued run."""
    from mmengine.runner import find_latest_checkpoint

    from tinyvim_mm.utils.safe_load import read_checkpoint_meta
    randomness = dict(cfg.get('randomness') or {})
    if randomness.get('seed') is not None:
        return
    checkpoint = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    if checkpoint and osp.isfile(checkpoint):
        seed = read_checkpoint_meta(checkpoint).get('seed')
        if seed is not None:
            cfg.randomness = dict(randomness, seed=seed)


def build_runner(cfg: Config):
    """The config's ``runner_type`` or MMEngine's ``Runner``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if runner.distributed:
        log_sync_bn(runner)
    return runner


def log_sync_bn(runner) -> None:
    """Log how many BatchNorm layers (backbone included) run as SyncBatchNorm."""
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _BatchNorm
    norms = [(name, m) for name, m in runner.model.named_modules() if isinstance(m, _BatchNorm)]
    synced = [name for name, m in norms if isinstance(m, nn.SyncBatchNorm)]
    in_backbone = [name for name in synced if '.backbone.' in f'.{name}']
    runner.logger.info(f'SyncBatchNorm: {len(synced)} of {len(norms)} BatchNorm layers '
                       f'({len(in_backbone)} in the backbone), '
                       f'sync_bn={runner.cfg.get("sync_bn")!r}')


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    # Registers TinyViM and friends, lets `_base_ = 'tinyvim_mm::...'` resolve, and
    # allow-lists what MMEngine checkpoints hold for torch.load(weights_only=True).
    import tinyvim_mm  # noqa: F401
    cfg = merge_args(Config.fromfile(args.config), args)
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
