"""TinyViM quickstart: toy data, three short CPU trainings, metrics, pictures.

Generates the toy ImageNet / COCO / ADE20K sets, trains TinyViM-S image
classification (mmpretrain), Mask R-CNN (mmdet) and Semantic FPN (mmseg) from
scratch for a short schedule on CPU through ``mmengine.runner.Runner``, tests
each with its toolbox's metric (top-1, COCO bbox/segm mAP, mIoU), draws one
prediction picture per task (``tools/demo.py``) and the feature spectra of the
trained classifier (``tools/visualize_spectrum.py``), and prints a summary
table. Everything lands in ``--work-dir`` (default ``work_dirs/quickstart``):
one work dir per task, ``summary.json``, ``summary.md`` and the PNGs.

The tasks run in ``--jobs`` parallel lanes of single-task worker processes
(default: 2 lanes on 2 cores, ``det`` | ``cls`` then ``seg``), each with
``--threads`` torch threads: on a small or shared CPU, one thread per process
beats two threads fighting over two cores.

Usage::

    python tools/quickstart.py                 # ~5 min on 2 CPU cores
    python tools/quickstart.py --smoke         # tiny data, 2 iterations each
    python tools/quickstart.py --tasks cls seg --work-dir work_dirs/qs

Each task's settings are the toy config (``configs/*_toy_*.py``) plus the
overrides of :func:`task_overrides`; the runner dumps the merged config into
the task's work dir, so ``python tools/train.py work_dirs/quickstart/cls/<cfg>.py``
repeats a run.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent
TASKS = ('cls', 'det', 'seg')
CONFIGS = {
    'cls': 'configs/tinyvim_s_toy_imagenet.py',
    'det': 'configs/mask_rcnn_tinyvim_s_toy_coco.py',
    'seg': 'configs/fpn_tinyvim_s_toy_ade.py',
}
TITLES = {
    'cls': 'Classification, TinyViM-S (mmpretrain), toy ImageNet',
    'det': 'Mask R-CNN TinyViM-S (mmdet), toy COCO',
    'seg': 'Semantic FPN TinyViM-S (mmseg), toy ADE20K',
}
# (summary label, key in the metrics dict the toolbox returns)
METRICS = {
    'cls': [('top-1 (%)', 'accuracy/top1')],
    'det': [('bbox mAP', 'coco/bbox_mAP'), ('segm mAP', 'coco/segm_mAP')],
    'seg': [('mIoU (%)', 'mIoU')],
}
DATA_DIRS = {'cls': 'imagenet', 'det': 'coco', 'seg': 'ade'}
# What "it learns" means on the toy sets (full mode; chance is 10 % top-1).
TARGETS = {'accuracy/top1': 40.0, 'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.1, 'mIoU': 30.0}


def banner(text: str) -> None:
    """Print a stage banner."""
    line = '=' * 78
    print(f'\n{line}\n[quickstart] {text}\n{line}', flush=True)


# ---------------------------------------------------------------------------------------
# Task configs: the toy config + short-CPU-schedule overrides


def task_overrides(task: str, data_root: str, work_dir: str, smoke: bool) -> Dict[str, Any]:
    """``--cfg-options``-style overrides (dotted keys) turning the toy config of
    ``task`` into the quickstart's short CPU run; a pipeline step is addressed
    by its type (``train_dataloader.dataset.pipeline.Resize.scale``)."""
    common: Dict[str, Any] = {  # train_cfg.val_begin > the run: evaluated once, after
        'work_dir': work_dir,
        'randomness': dict(seed=0),
        'default_hooks.logger.interval': 1 if smoke else 10,
        'log_processor.window_size': 1 if smoke else 10,
        'env_cfg.cudnn_benchmark': False,
    }
    loader = dict(num_workers=0, persistent_workers=False)
    if task == 'cls':
        img, epochs, batch = (32, 1, 8) if smoke else (64, 12, 32)
        classes = f'{data_root}/meta/classes.txt'
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='RandomResizedCrop', scale=img, crop_ratio_range=(0.4, 1.0),
                 backend='pillow', interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(type='PackInputs'),
        ]
        test_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='ResizeEdge', scale=img, edge='short', backend='pillow',
                 interpolation='bicubic'),
            dict(type='CenterCrop', crop_size=img),
            dict(type='PackInputs'),
        ]
        val_loader = dict(
            batch_size=50, **loader,
            dataset=dict(data_root=data_root, classes=classes, pipeline=test_pipeline))
        iters = epochs * -(-(10 * (4 if smoke else 40)) // batch)
        return {
            **common,
            # no teacher, no Mixup/CutMix: a short schedule learns faster without them
            'model.teacher': None,
            'model.teacher_checkpoint': None,
            'model.train_cfg': None,
            'train_dataloader': dict(
                batch_size=batch, **loader,
                dataset=dict(data_root=data_root, classes=classes, pipeline=train_pipeline)),
            'val_dataloader': val_loader,
            'test_dataloader': val_loader,
            'optim_wrapper.optimizer.lr': 2e-3,
            'param_scheduler': [
                dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
                     convert_to_iter_based=True),
                dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1,
                     end=max(epochs, 2), convert_to_iter_based=True),
            ],
            'train_cfg': dict(by_epoch=True, max_epochs=epochs, val_begin=epochs + 1),
            # EMA over ~10 % of the run (validation and checkpoint use it)
            'custom_hooks': [dict(type='EMAHook', momentum=min(0.5, 10 / iters),
                                  update_buffers=True, priority='ABOVE_NORMAL')],
            'default_hooks.checkpoint': dict(type='CheckpointHook', interval=epochs,
                                             max_keep_ckpts=1, save_best=None),
        }
    if task == 'det':
        # CPU-sized Mask R-CNN: FPN and heads at 128 channels (256 in the toy config),
        # 64 sampled RoIs per image, at most 20 detections per image (<= 5 objects).
        scale, epochs, batch = ((128, 96), 1, 2) if smoke else ((256, 224), 2, 4)
        width = 128
        root = data_root + '/'
        ann = root + 'annotations/instances_val2017.json'
        return {
            **common,
            'model.neck.out_channels': width,
            'model.rpn_head.in_channels': width,
            'model.rpn_head.feat_channels': width,
            'model.roi_head.bbox_roi_extractor.out_channels': width,
            'model.roi_head.bbox_head.in_channels': width,
            'model.roi_head.mask_roi_extractor.out_channels': width,
            'model.roi_head.mask_head.in_channels': width,
            'model.roi_head.mask_head.conv_out_channels': width,
            'model.train_cfg.rpn_proposal.max_per_img': 150,
            'model.train_cfg.rcnn.sampler.num': 64,
            'model.test_cfg.rpn.max_per_img': 100,
            'model.test_cfg.rcnn.max_per_img': 20,
            'train_dataloader.batch_size': batch,
            'train_dataloader.dataset.data_root': root,
            'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root,
            **{f'{split}_dataloader.{k}': v for split in ('train', 'val', 'test')
               for k, v in loader.items()},
            'train_dataloader.dataset.pipeline.Resize.scale': scale,
            'val_dataloader.dataset.pipeline.Resize.scale': scale,
            'test_dataloader.dataset.pipeline.Resize.scale': scale,
            'val_evaluator.ann_file': ann,
            'test_evaluator.ann_file': ann,
            'optim_wrapper.optimizer.lr': 1e-3,
            'param_scheduler': [
                dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                     end=2 if smoke else 25),
                dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
                     end=epochs, convert_to_iter_based=True),
            ],
            'train_cfg': dict(max_epochs=epochs, val_begin=epochs + 1),
            'default_hooks.checkpoint': dict(type='CheckpointHook', interval=epochs,
                                             max_keep_ckpts=1),
        }
    if task == 'seg':
        crop, iters, batch = (64, 2, 2) if smoke else (128, 160, 4)
        scale = (4 * crop, crop)
        return {
            **common,
            'model.data_preprocessor.size': (crop, crop),
            'train_dataloader.batch_size': batch,
            **{f'{split}_dataloader.{k}': v for split in ('train', 'val', 'test')
               for k, v in loader.items()},
            'train_dataloader.dataset.data_root': data_root,
            'val_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.data_root': data_root,
            'train_dataloader.dataset.pipeline.RandomResize.scale': scale,
            'train_dataloader.dataset.pipeline.RandomCrop.crop_size': (crop, crop),
            'val_dataloader.dataset.pipeline.Resize.scale': scale,
            'test_dataloader.dataset.pipeline.Resize.scale': scale,
            'param_scheduler': [
                dict(type='LinearLR', start_factor=1e-3, begin=0, end=max(iters // 10, 1),
                     by_epoch=False),
                dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=max(iters // 10, 1),
                     end=iters, by_epoch=False),
            ],
            'train_cfg': dict(type='IterBasedTrainLoop', max_iters=iters, val_begin=iters + 1),
            'default_hooks.logger.interval': 1 if smoke else 20,
            'default_hooks.checkpoint': dict(type='CheckpointHook', by_epoch=False,
                                             interval=iters, max_keep_ckpts=1),
        }
    raise ValueError(f'unknown task {task!r}; choose from {TASKS}')


def _resolve_pipeline_keys(cfg: Any, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Replace ``...pipeline.<StepType>...`` in the keys by the step's index."""
    resolved = {}
    for key, value in overrides.items():
        head, sep, tail = key.partition('.pipeline.')
        if sep and not tail.split('.')[0].isdigit():
            step_type, _, rest = tail.partition('.')
            pipeline = cfg
            for part in f'{head}.pipeline'.split('.'):
                pipeline = pipeline[part]
            index = [step['type'] for step in pipeline].index(step_type)
            key = f'{head}.pipeline.{index}.{rest}'
        resolved[key] = value
    return resolved


def build_config(task: str, data_root: str, work_dir: str, smoke: bool) -> Any:
    """The toy config of ``task`` with :func:`task_overrides` merged in."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / CONFIGS[task]))
    overrides = task_overrides(task, data_root, work_dir, smoke)
    cfg.merge_from_dict(_resolve_pipeline_keys(cfg, overrides), allow_list_keys=True)
    return cfg


# ---------------------------------------------------------------------------------------
# One task, in a worker process: train, test, draw


def _last_checkpoint(work_dir: str) -> str:
    return (Path(work_dir) / 'last_checkpoint').read_text().strip()


def _demo_image(task: str, data_root: str) -> str:
    """A validation image to draw predictions on."""
    if task == 'cls':  # the first 'star' of the toy ImageNet val split
        classes = (Path(data_root) / 'meta' / 'classes.txt').read_text().split()
        for line in (Path(data_root) / 'meta' / 'val.txt').read_text().splitlines():
            name, label = line.split()
            if classes[int(label)] == 'star':
                return f'{data_root}/val/{name}'
    folder = {'det': 'val2017', 'seg': 'images/validation'}.get(task, 'val')
    return str(sorted((Path(data_root) / folder).glob('*.jpg'))[0])


def run_task(task: str, data_root: str, out_dir: str, smoke: bool, threads: int) -> dict:
    """Train ``task``, test the saved checkpoint in a fresh runner (as
    ``tools/test.py`` does) with the toolbox's metric, save its prediction
    picture (and, for ``cls``, the spectrum figure); the result is also written
    to ``<out_dir>/<task>/result.json``."""
    import resource

    import torch
    torch.set_num_threads(threads)
    from mmengine.runner import Runner

    sys.path.insert(0, str(TOOLS))
    import demo
    import visualize_spectrum

    work_dir = os.path.join(out_dir, task)
    cfg = build_config(task, data_root, work_dir, smoke)
    tic = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_s = time.perf_counter() - tic
    del runner
    ckpt = _last_checkpoint(work_dir)
    config = os.path.join(work_dir, Path(CONFIGS[task]).name)  # dumped by the runner

    tic = time.perf_counter()
    cfg.load_from = ckpt
    cfg.experiment_name = f'{task}_test'
    metrics = Runner.from_cfg(cfg).test()
    test_s = time.perf_counter() - tic

    image = _demo_image(task, data_root)
    pictures = [os.path.join(out_dir, f'demo_{task}.png')]
    demo.draw(image, config, ckpt, pictures[0])
    if task == 'cls':
        pictures.append(os.path.join(out_dir, 'spectrum_cls.png'))
        visualize_spectrum.plot_spectra(image, pictures[1], config=config, checkpoint=ckpt)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = dict(task=task, title=TITLES[task], config=CONFIGS[task],
                  metrics={k: float(v) for k, v in metrics.items()},
                  train_s=round(train_s, 1), test_s=round(test_s, 1),
                  cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
                  checkpoint=ckpt, pictures=pictures)
    Path(work_dir, 'result.json').write_text(json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------------------
# The driver: data, lanes of worker processes, summary


def plan_lanes(tasks: List[str], jobs: int) -> List[List[str]]:
    """Split ``tasks`` into ``jobs`` sequential lanes, the slowest (det) alone
    when possible."""
    order = sorted(tasks, key=lambda t: t != 'det')
    jobs = max(1, min(jobs, len(order)))
    lanes = [[task] for task in order[:jobs]]
    lanes[-1] += order[jobs:]
    return lanes


class ConsoleFilter:
    """Keeps the console readable: hides the config dump, the per-parameter
    optimizer settings and known deprecation warnings (``console.log`` in the
    task's work dir keeps everything)."""

    HIDDEN = ('paramwise_options --', 'pkg_resources', '_bootstrap._exec(')
    # mmengine log lines that open a multi-line block: config, environment, hooks
    BLOCKS = ('INFO - Config:', 'INFO -', 'in the following order:')

    def __init__(self) -> None:
        self.in_block = False

    def show(self, line: str) -> bool:
        """Whether ``line`` goes to the console."""
        if ' - mmengine - ' in line:
            self.in_block = line.rstrip().endswith(self.BLOCKS)
        return not self.in_block and not any(h in line for h in self.HIDDEN)


def _run_lane(lane: List[str], args: argparse.Namespace, results: Dict[str, dict]) -> None:
    """Run the tasks of one lane one after the other, each in a worker process
    whose output is echoed with a ``[task]`` prefix."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED='1')
    for task in lane:
        print(f'[quickstart] >>> {TITLES[task]}: training starts', flush=True)
        Path(args.work_dir, task).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', task,
               '--data-root', args.data_root, '--work-dir', args.work_dir,
               '--threads', str(args.threads)] + (['--smoke'] if args.smoke else [])
        result_file = Path(args.work_dir, task, 'result.json')
        result_file.unlink(missing_ok=True)
        tic = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        with open(Path(args.work_dir, task, 'console.log'), 'w') as log:
            quiet = ConsoleFilter()
            for line in proc.stdout:
                log.write(line)
                if quiet.show(line):
                    print(f'[{task}] {line}', end='', flush=True)
        proc.wait()
        elapsed = time.perf_counter() - tic
        if proc.returncode == 0 and result_file.is_file():
            results[task] = dict(json.loads(result_file.read_text()), time_s=round(elapsed, 1))
            print(f'[quickstart] <<< {task} done in {elapsed:.0f} s', flush=True)
        else:
            results[task] = dict(task=task, title=TITLES[task], config=CONFIGS[task],
                                 error=f'exit status {proc.returncode}',
                                 time_s=round(elapsed, 1))
            print(f'[quickstart] <<< {task} FAILED (exit status {proc.returncode}) '
                  f'after {elapsed:.0f} s', flush=True)


def summary_rows(results: Dict[str, dict], smoke: bool) -> List[List[str]]:
    """``[task, metric, value, it learns if, time]`` rows of the summary table;
    the time is the task's wall time (and its CPU time)."""
    rows = []
    for task in TASKS:
        if task not in results:
            continue
        res = results[task]
        took = f"{res['time_s']:.0f} s" + (f" (CPU {res['cpu_s']:.0f} s)" if 'cpu_s' in res else '')
        for label, key in METRICS[task]:
            value = res.get('metrics', {}).get(key)
            text = 'FAILED' if value is None else f'{value:.3f}' if key.startswith('coco') \
                else f'{value:.1f}'
            target = 'n/a (smoke)' if smoke else f'≥ {TARGETS[key]:g}'
            if value is not None and not smoke:
                text += ' ✓' if value >= TARGETS[key] else ' ✗'
            rows.append([res['title'], label, text, target, took])
    return rows


def markdown_table(rows: List[List[str]], total_s: float) -> str:
    """The summary as a Markdown table (the last row: the total wall time)."""
    head = ['task', 'metric', 'value', 'it learns if', 'time']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    lines.append('| **total** (install check, toy data, training, tests, pictures) | | | | '
                 f'**{total_s:.0f} s** |')
    return '\n'.join(lines) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description='TinyViM quickstart: toy data, short CPU trainings of the '
        'classification, detection and segmentation models, metrics and pictures.')
    parser.add_argument('--work-dir', default='work_dirs/quickstart', help='output folder')
    parser.add_argument('--data-root', default='data/toy', help='toy data folder')
    parser.add_argument('--tasks', nargs='+', choices=TASKS, default=list(TASKS))
    parser.add_argument('--smoke', action='store_true',
                        default=os.environ.get('QUICKSTART_SMOKE') == '1',
                        help='tiny data, a couple of iterations each (env QUICKSTART_SMOKE=1)')
    parser.add_argument('--jobs', type=int, default=min(cpus, 3),
                        help='tasks run in parallel (default: min(CPUs, 3))')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads per task (default: (CPUs - 1) // jobs, at least 1:'
                        ' threads fighting over busy cores are many times slower)')
    parser.add_argument('--start-time', type=float, default=None,
                        help='epoch seconds the total time counts from (quickstart.sh)')
    parser.add_argument('--worker', choices=TASKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = max(1, (cpus - 1) // max(1, min(args.jobs, len(args.tasks))))
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    if args.worker:
        task = args.worker
        data_root = os.path.join(args.data_root, DATA_DIRS[task])
        run_task(task, data_root, args.work_dir, args.smoke, args.threads)
        return 0

    start = args.start_time or time.time()
    load_start = os.getloadavg()
    os.makedirs(args.work_dir, exist_ok=True)
    size = 'tiny' if args.smoke else 'default'
    banner(f'toy data ({size}) under {args.data_root}')
    sys.path.insert(0, str(REPO))
    from tinyvim_mm.datasets import make_toy_data
    for info in make_toy_data(args.data_root, [DATA_DIRS[t] for t in args.tasks],
                              size=size).values():
        print(f'[quickstart] {info.name}: {info.root} {info.num_samples}', flush=True)

    lanes = plan_lanes(args.tasks, args.jobs)
    banner(f'training + testing {", ".join(args.tasks)}{" (smoke)" if args.smoke else ""}: '
           f'{len(lanes)} lane(s) {lanes}, {args.threads} thread(s) each')
    results: Dict[str, dict] = {}
    threads = [threading.Thread(target=_run_lane, args=(lane, args, results)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total_s = time.time() - start
    table = markdown_table(summary_rows(results, args.smoke), total_s)
    summary = dict(smoke=args.smoke, total_s=round(total_s, 1), lanes=lanes,
                   threads=args.threads, cpus=os.cpu_count(), load_start=load_start,
                   load_end=os.getloadavg(), tasks=results)
    Path(args.work_dir, 'summary.json').write_text(json.dumps(summary, indent=2))
    Path(args.work_dir, 'summary.md').write_text(
        f'# TinyViM quickstart{" (smoke)" if args.smoke else ""}\n\n{table}')
    banner(f'summary ({args.work_dir}/summary.md)')
    print(table, flush=True)
    pictures = [p for res in results.values() for p in res.get('pictures', [])]
    print('[quickstart] pictures: ' + ', '.join(pictures), flush=True)
    failed = [t for t, res in results.items() if 'error' in res]
    if failed:
        print(f'[quickstart] FAILED: {failed}', flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
