"""TinyViM quickstart: toy data, short CPU trainings of the toy recipes, metrics, pictures.

Generates the toy ImageNet / COCO / ADE20K sets, then per task runs the README's
commands on the shipped toy config (``configs/*toy*.py``, the recipe), each in its own
process: ``tools/train.py CONFIG --cfg-options ...`` (TinyViM-S classification, Mask
R-CNN, Semantic FPN, from scratch), ``tools/test.py CONFIG CHECKPOINT`` (top-1, COCO
bbox/segm mAP, mIoU) and the pictures (:func:`tinyvim_mm.apis.draw`,
:func:`tinyvim_mm.analysis.spectrum.plot_spectra`). The options change only schedule,
batch, loaders, logging and paths, never model or pipelines: each checkpoint fits its toy
config as it is, and the config the runner dumps into the task's work dir repeats the
run. Outputs in ``--work-dir``: a work dir per task, ``summary.{json,md}``, the PNGs.
Tasks run in ``--jobs`` lanes (2 on 2 cores: det | seg, cls), ``--threads`` torch
threads per process (one thread per process beats two fighting over two cores).

Usage::

    python tools/quickstart.py                 # ~5 min on 2 CPU cores
    python tools/quickstart.py --smoke         # tiny data, a few iterations each
    python tools/quickstart.py --tasks cls seg --work-dir work_dirs/qs
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
# Per task: toy config, title, toy set, metrics (label, key, "it learns" in the full
# run) and the short CPU runs, (full, smoke): (length in epochs (seg: iterations), batch,
# warm-up in epochs (det, seg: iterations), log interval).
TASKS = {
    'cls': dict(config='configs/tinyvim_s_toy_imagenet.py', data='imagenet',
                title='Classification, TinyViM-S (mmpretrain), toy ImageNet',
                metrics=[('top-1 (%)', 'accuracy/top1', 40.0)],  # chance: 10 %
                runs=((12, 32, 1, 10), (2, 20, 1, 1))),
    'det': dict(config='configs/mask_rcnn_tinyvim_s_toy_coco.py', data='coco',
                title='Mask R-CNN TinyViM-S (mmdet), toy COCO',
                metrics=[('bbox mAP', 'coco/bbox_mAP', 0.1), ('segm mAP', 'coco/segm_mAP', 0.1)],
                runs=((2, 4, 25, 10), (1, 2, 2, 1))),
    'seg': dict(config='configs/fpn_tinyvim_s_toy_ade.py', data='ade',
                title='Semantic FPN TinyViM-S (mmseg), toy ADE20K',
                metrics=[('mIoU (%)', 'mIoU', 30.0)], runs=((160, 4, 16, 20), (2, 2, 1, 1))),
}


def banner(text: str) -> None:
    """Print a stage banner."""
    print(f'\n{"=" * 78}\n[quickstart] {text}\n{"=" * 78}', flush=True)


def data_options(task: str, data_root: str) -> List[str]:
    """``--cfg-options``: the toy set of ``task`` under ``data_root``, no data workers."""
    root = f'{data_root}/{TASKS[task]["data"]}' + ('/' if task == 'det' else '')
    options = [f'{split}_dataloader.{key}' for split in ('train', 'val', 'test') for key in (
        f'dataset.data_root={root}', 'num_workers=0', 'persistent_workers=False')]
    if task == 'det':
        options += [f'{split}_evaluator.ann_file={root}annotations/instances_val2017.json'
                    for split in ('val', 'test')]
    return options


def train_options(task: str, data_root: str, smoke: bool) -> List[str]:
    """``--cfg-options`` of the short CPU run of ``task``: schedule, batch, loaders,
    logging, paths; no validation while training (``tools/test.py`` tests)."""
    length, batch, warmup, log = TASKS[task]['runs'][smoke]
    unit = 'iters' if task == 'seg' else 'epochs'
    return data_options(task, data_root) + [
        f'train_dataloader.batch_size={batch}', f'train_cfg.max_{unit}={length}',
        f'train_cfg.val_begin={length + 1}', f'param_scheduler.0.end={warmup}',
        # det: warm-up and cosine both start at 0; cls, seg: the decay follows the warm-up
        f'param_scheduler.1.begin={0 if task == "det" else warmup}',
        f'param_scheduler.1.end={length}', f'default_hooks.logger.interval={log}',
        f'log_processor.window_size={log}']


def demo_image(task: str, data_root: str) -> str:
    """A validation image of the toy set of ``task`` (cls: the first star)."""
    root = Path(data_root, TASKS[task]['data'])
    if task == 'cls':
        classes = (root / 'meta' / 'classes.txt').read_text().split()
        for name, label in map(str.split, (root / 'meta' / 'val.txt').read_text().splitlines()):
            if classes[int(label)] == 'star':
                return str(root / 'val' / name)
    folder = 'val2017' if task == 'det' else 'images/validation'
    return str(sorted((root / folder).glob('*.jpg'))[0])


def draw_pictures(task: str, data_root: str, out_dir: str) -> List[str]:
    """The prediction picture of the checkpoint of ``task`` (``cls``: and the spectra)."""
    from tinyvim_mm.analysis.spectrum import plot_spectra
    from tinyvim_mm.apis import draw
    checkpoint = Path(out_dir, task, 'last_checkpoint').read_text().strip()
    image, pictures = demo_image(task, data_root), [f'{out_dir}/demo_{task}.png']
    draw(image, TASKS[task]['config'], checkpoint, pictures[0])
    if task == 'cls':
        pictures.append(f'{out_dir}/spectrum_cls.png')
        plot_spectra(image, pictures[1], config=TASKS[task]['config'], checkpoint=checkpoint)
    return pictures


def plan_lanes(tasks: List[str], jobs: int) -> List[List[str]]:
    """``tasks`` in ``jobs`` sequential lanes, the slowest (det) alone if possible."""
    order = sorted(tasks, key=lambda t: ('det', 'seg', 'cls').index(t))
    jobs = max(1, min(jobs, len(order)))
    lanes = [[task] for task in order[:jobs]]
    lanes[-1] += order[jobs:]
    return lanes


class ConsoleFilter:
    """Hides the config dump, the per-parameter optimizer settings and known deprecation
    warnings from the console (``console.log`` in the task's work dir keeps all)."""

    HIDDEN = ('paramwise_options --', 'pkg_resources', '_bootstrap._exec(')
    BLOCKS = ('INFO - Config:', 'INFO -', 'in the following order:')  # multi-line blocks

    def __init__(self) -> None:
        self.in_block = False

    def show(self, line: str) -> bool:
        """Whether ``line`` goes to the console."""
        if ' - mmengine - ' in line:
            self.in_block = line.rstrip().endswith(self.BLOCKS)
        return not self.in_block and not any(h in line for h in self.HIDDEN)


def run_step(task: str, cmd: List[str], args: argparse.Namespace, record: dict) -> None:
    """``python CMD`` in the repository, its output in the task's ``console.log`` and,
    filtered, on the console; adds the command and its CPU time to ``record``."""
    record['commands'].append('python ' + shlex.join(cmd))
    print(f'[{task}] $ {record["commands"][-1]}', flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, *cmd], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    quiet = ConsoleFilter()
    with open(Path(args.work_dir, task, 'console.log'), 'a') as log:
        for line in proc.stdout:
            log.write(line)
            if quiet.show(line):
                print(f'[{task}] {line}', end='', flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    record['cpu_s'] = round(record['cpu_s'] + usage.ru_utime + usage.ru_stime, 1)
    if proc.returncode:
        raise RuntimeError(f'exit status {proc.returncode}: {record["commands"][-1]}')


def run_task(task: str, args: argparse.Namespace) -> dict:
    """Train, test (the metrics ``tools/test.py`` writes), draw: the task's result."""
    spec, work_dir = TASKS[task], Path(args.work_dir, task)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / 'console.log').unlink(missing_ok=True)
    res = dict(task=task, title=spec['title'], config=spec['config'], commands=[], cpu_s=0.0)
    tic = time.perf_counter()
    run_step(task, ['tools/train.py', spec['config'], '--work-dir', str(work_dir),
                    '--cfg-options', *train_options(task, args.data_root, args.smoke)],
             args, res)
    res['train_s'], tic = round(time.perf_counter() - tic, 1), time.perf_counter()
    res['checkpoint'] = (work_dir / 'last_checkpoint').read_text().strip()
    run_step(task, ['tools/test.py', spec['config'], res['checkpoint'], '--work-dir',
                    str(work_dir / 'test'), '--cfg-options',
                    *data_options(task, args.data_root)], args, res)
    res['test_s'] = round(time.perf_counter() - tic, 1)
    metrics = json.loads(sorted((work_dir / 'test').glob('*/*.json'))[-1].read_text())
    res['metrics'] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    run_step(task, [__file__, '--draw', task, '--data-root', args.data_root,
                    '--work-dir', args.work_dir], args, res)
    res['pictures'] = json.loads((work_dir / 'pictures.json').read_text())
    return res


def run_lane(lane: List[str], args: argparse.Namespace, results: Dict[str, dict]) -> None:
    """Run the tasks of one lane one after the other."""
    for task in lane:
        print(f'[quickstart] >>> {TASKS[task]["title"]}', flush=True)
        tic = time.perf_counter()
        try:
            results[task] = run_task(task, args)
            print(f'[quickstart] <<< {task} done in {time.perf_counter() - tic:.0f} s', flush=True)
        except Exception as err:  # reported in the summary; the other tasks go on
            results[task] = dict(task=task, title=TASKS[task]['title'], error=str(err))
            print(f'[quickstart] <<< {task} FAILED: {err}', flush=True)
        results[task]['time_s'] = round(time.perf_counter() - tic, 1)


def summary_table(results: Dict[str, dict], smoke: bool, total_s: float) -> str:
    """The summary as a Markdown table: per metric the value, the "it learns" threshold
    and the task's wall time (and the CPU time of its processes); then the total."""
    lines = ['| task | metric | value | it learns if | time |', '|---|---|---|---|---|']
    for task in (t for t in TASKS if t in results):
        res = results[task]
        took = f"{res['time_s']:.0f} s" + (f" (CPU {res['cpu_s']:.0f} s)" if 'cpu_s' in res else '')
        for label, key, target in TASKS[task]['metrics']:
            value = res.get('metrics', {}).get(key)
            text = 'FAILED' if value is None else f'{value:.{3 if "coco" in key else 1}f}'
            if value is not None and not smoke:
                text += ' ✓' if value >= target else ' ✗'
            wanted = 'n/a (smoke)' if smoke else f'≥ {target:g}'
            lines.append(f'| {res["title"]} | {label} | {text} | {wanted} | {took} |')
    lines.append('| **total** (install check, toy data, training, tests, pictures) | | | | '
                 f'**{total_s:.0f} s** |')
    return '\n'.join(lines) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/quickstart', help='output folder')
    parser.add_argument('--data-root', default='data/toy', help='toy data folder')
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS), default=list(TASKS))
    parser.add_argument('--smoke', action='store_true',
                        default=os.environ.get('QUICKSTART_SMOKE') == '1',
                        help='tiny data, a few iterations each (env QUICKSTART_SMOKE=1)')
    parser.add_argument('--jobs', type=int, default=min(cpus, 3),
                        help='tasks run in parallel (default: min(CPUs, 3))')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads per process (default: (CPUs - 1) // jobs, >= 1)')
    parser.add_argument('--start-time', type=float, default=None,
                        help='epoch seconds the total time counts from (quickstart.sh)')
    parser.add_argument('--draw', choices=list(TASKS), help=argparse.SUPPRESS)  # a picture step
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = max(1, (cpus - 1) // max(1, min(args.jobs, len(args.tasks))))
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    if args.draw:
        Path(args.work_dir, args.draw, 'pictures.json').write_text(json.dumps(
            draw_pictures(args.draw, args.data_root, args.work_dir)))
        return 0

    start, load_start = args.start_time or time.time(), os.getloadavg()
    os.makedirs(args.work_dir, exist_ok=True)
    size = 'tiny' if args.smoke else 'default'
    banner(f'toy data ({size}) under {args.data_root}')
    from tinyvim_mm.datasets import make_toy_data
    for info in make_toy_data(args.data_root, [TASKS[t]['data'] for t in args.tasks],
                              size=size).values():
        print(f'[quickstart] {info.name}: {info.root} {info.num_samples}', flush=True)

    lanes = plan_lanes(args.tasks, args.jobs)
    banner(f'training + testing {", ".join(args.tasks)}{" (smoke)" if args.smoke else ""}: '
           f'{len(lanes)} lane(s) {lanes}, {args.threads} thread(s) each')
    results: Dict[str, dict] = {}
    threads = [threading.Thread(target=run_lane, args=(lane, args, results)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total_s = time.time() - start
    table = summary_table(results, args.smoke, total_s)
    Path(args.work_dir, 'summary.json').write_text(json.dumps(dict(
        smoke=args.smoke, total_s=round(total_s, 1), lanes=lanes, threads=args.threads,
        cpus=os.cpu_count(), load_start=load_start, load_end=os.getloadavg(),
        tasks=results), indent=2))
    Path(args.work_dir, 'summary.md').write_text(
        f'# TinyViM quickstart{" (smoke)" if args.smoke else ""}\n\n{table}')
    banner(f'summary ({args.work_dir}/summary.md)')
    print(table, flush=True)
    print('[quickstart] pictures: ' + ', '.join(
        p for res in results.values() for p in res.get('pictures', [])), flush=True)
    failed = [task for task, res in results.items() if 'error' in res]
    if failed:
        print(f'[quickstart] FAILED: {failed}', flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
