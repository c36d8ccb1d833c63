"""Runner set-up shared by ``tools/train.py`` and ``tools/test.py`` (and usable from
scripts): work dir, launcher (distributed on CPU over gloo), mixed precision, exact
resume, strict checkpoints, visualization and test-time augmentation for the three
toolboxes."""
import argparse
import logging
import os.path as osp
from copy import deepcopy
from typing import Optional

from mmengine.config import Config, ConfigDict, DictAction

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by train.py and test.py."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs merged into the config, e.g. '
        'train_cfg.max_iters=100 "model.neck.in_channels=[48,64,168,224]"')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


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


def keep_checkpoint_seed(cfg: Config) -> None:
    """Resume with the checkpoint's seed when the config fixes none: samplers and data
    workers are seeded before the checkpoint is read, so a fresh random seed would change
    the data order of the continued run."""
    from mmengine.runner import find_latest_checkpoint

    from tinyvim_mm.checkpoint import read_checkpoint_meta
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

    from tinyvim_mm.models.backbones import check_in_channels
    check_in_channels(cfg.model)
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


def toolbox(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'default_scope {scope!r}: expected one of {TOOLBOXES} '
                         '(configs inherit the toolbox\'s default_runtime)')
    return scope


def enable_visualization(cfg: Config, scope: str, show: bool = False,
                         show_dir: Optional[str] = None, interval: int = 1,
                         wait_time: float = 2) -> None:
    """Turn on the toolbox's visualization hook (DetVisualizationHook,
    SegVisualizationHook, VisualizationHook) as its own test.py does."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show / --show-dir need default_hooks.visualization in the config')
    hook.update(show=show, wait_time=wait_time, interval=interval)
    if scope == 'mmpretrain':
        hook.update(enable=True, out_dir=show_dir)
        return
    hook.draw = True
    if show_dir and scope == 'mmdet':
        hook.test_out_dir = show_dir
    elif show_dir:
        cfg.visualizer.save_dir = show_dir


def enable_tta(cfg: Config, scope: str) -> None:
    """Wrap the model in the config's ``tta_model`` and test with ``tta_pipeline``;
    without them flip TTA for mmdet and mmpretrain (as their test.py)."""
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        if scope == 'mmseg':
            raise RuntimeError('--tta needs tta_model and tta_pipeline in the config')
        pipeline = deepcopy(cfg.test_dataloader.dataset.pipeline)
        pack = pipeline[-1]
        if scope == 'mmdet':
            cfg.setdefault('tta_model', dict(
                type='DetTTAModel',
                tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
            pack = dict(pack, meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction'))
        else:
            cfg.setdefault('tta_model', dict(type='AverageClsScoreTTA'))
        pipeline[-1] = dict(type='TestTimeAug', transforms=[
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)], [pack]])
        cfg.setdefault('tta_pipeline', pipeline)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def add_dump(runner, out: str, scope: str) -> None:
    """Predictions to a pickle file (mmdet: boxes and RLE masks)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {out}: the predictions file must be a .pkl file')
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))
