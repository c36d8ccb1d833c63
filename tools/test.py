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
from typing import List, Optional

from mmengine.config import Config

from tinyvim_mm.checkpoint import use_safe_loader
from tinyvim_mm.engine.runner import (add_common_args, add_dump, add_hook, apply_launcher,
                                      build_runner, default_work_dir, enable_tta,
                                      enable_visualization, toolbox)


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
    parser.add_argument('--deploy', action='store_true',
                        help='test the fast inference form: folded layers, fused Triton '
                        'kernels where the GPU runs them, the backbone replayed from CUDA '
                        'graphs on GPUs (InferenceFormHook)')
    parser.add_argument('--no-cuda-graphs', action='store_true',
                        help='with --deploy: run the backbone eagerly, without CUDA graphs')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: the config\'s tta_model / tta_pipeline, '
                        'or flip TTA (mmdet, mmpretrain)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


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
        enable_visualization(cfg, scope, args.show, args.show_dir, args.interval,
                             args.wait_time)
    if args.tta:
        enable_tta(cfg, scope)
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    add_hook(cfg, dict(type='CheckpointGuardHook', strict_load=True))
    if args.no_cuda_graphs and not args.deploy:
        raise ValueError('--no-cuda-graphs applies to --deploy (the plain form replays no '
                         'CUDA graphs)')
    if args.deploy:
        add_hook(cfg, dict(type='InferenceFormHook', cuda_graphs=not args.no_cuda_graphs))
    apply_launcher(cfg, args.launcher)
    return cfg


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    use_safe_loader()
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg)
    if args.out is not None and cfg.default_scope != 'mmseg':
        add_dump(runner, args.out, cfg.default_scope)
    return runner.test()


if __name__ == '__main__':
    main()
