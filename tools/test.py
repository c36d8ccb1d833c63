"""Test (and evaluate) a TinyViM checkpoint with its toolbox (mmpretrain, mmdet or mmseg):
the config's ``default_scope`` decides; the toolbox's evaluator prints its metric tables.

Examples::

    python tools/test.py configs/fpn_tinyvim_s_toy_ade.py \
        work_dirs/fpn_tinyvim_s_toy_ade/iter_1000.pth
    python tools/test.py configs/mask_rcnn_tinyvim_b.py CKPT --out results.pkl --show-dir vis
    bash tools/dist_test.sh configs/tinyvim_s_8xb128_in1k.py CKPT 8

The checkpoint must fit the model exactly (missing, unexpected or mis-shaped keys are an
error naming them, not a silently half-loaded model).
"""
import argparse
import os
from copy import deepcopy
from typing import List, Optional

from mmengine.config import Config, ConfigDict

from train import (GUARD_HOOK, add_common_args, add_hook, apply_launcher, build_runner,
                   default_work_dir)

TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test a TinyViM model (mmpretrain / mmdet / mmseg config)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the metrics (json) and logs go')
    parser.add_argument(
        '--out', help='save the predictions as the toolbox\'s own test.py does: mmdet and '
        'mmpretrain a .pkl file, mmseg a directory of label maps')
    parser.add_argument('--show', action='store_true', help='show the predictions')
    parser.add_argument('--show-dir', help='save drawn predictions (mmdet and mmpretrain: '
                        'WORK_DIR/TIMESTAMP/SHOW_DIR; mmseg: SHOW_DIR/vis_data/vis_image)')
    parser.add_argument('--interval', type=int, default=1, help='draw every N-th image')
    parser.add_argument('--wait-time', type=float, default=2, help='--show: seconds per image')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: the config\'s tta_model / tta_pipeline, '
                        'or flip TTA (mmdet, mmpretrain)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def toolbox(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'default_scope {scope!r}: expected one of {TOOLBOXES} '
                         '(configs inherit the toolbox\'s default_runtime)')
    return scope


def enable_visualization(cfg: Config, args: argparse.Namespace, scope: str) -> None:
    """Turn on the toolbox's visualization hook (DetVisualizationHook,
    SegVisualizationHook, VisualizationHook) as its own test.py does."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show / --show-dir need default_hooks.visualization in the config')
    hook.update(show=args.show, wait_time=args.wait_time, interval=args.interval)
    if scope == 'mmpretrain':
        hook.update(enable=True, out_dir=args.show_dir)
        return
    hook.draw = True
    if args.show_dir and scope == 'mmdet':
        hook.test_out_dir = args.show_dir
    elif args.show_dir:
        cfg.visualizer.save_dir = args.show_dir


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


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    scope = toolbox(cfg)
    cfg.work_dir = default_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        if args.tta and scope == 'mmpretrain':
            raise ValueError('--show / --show-dir with --tta: mmpretrain\'s VisualizationHook '
                             'draws single-view batches only; drop one of them')
        enable_visualization(cfg, args, scope)
    if args.tta:
        enable_tta(cfg, scope)
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    add_hook(cfg, dict(type=GUARD_HOOK, strict_load=True))
    apply_launcher(cfg, args.launcher)
    return cfg


def add_dump(runner, out: str, scope: str) -> None:
    """Predictions to a pickle file (mmdet: boxes and RLE masks)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {out}: the predictions file must be a .pkl file')
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import tinyvim_mm  # noqa: F401  (see tools/train.py)
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg)
    if args.out is not None and cfg.default_scope != 'mmseg':
        add_dump(runner, args.out, cfg.default_scope)
    return runner.test()


if __name__ == '__main__':
    main()
