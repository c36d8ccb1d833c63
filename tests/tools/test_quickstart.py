"""The quickstart (tools/quickstart.sh -> tools/quickstart.py): its smoke mode end to end
(tiny toy data, a few iterations per task, every output), then the README's commands on
the checkpoints it made (``tools/test.py`` gives the quickstart's metric, ``tools/demo.py``
loads them strictly); and the pieces of the full run without training (only schedule /
loader / logging / path options on the shipped toy configs, lanes, console, summary)."""
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import List

import pytest
from mmengine.config import Config, DictAction
from PIL import Image

from conftest import REPO, load_module

#: what the quickstart may change in a toy config (never the model or a pipeline)
ALLOWED = re.compile(
    r'^((train|val|test)_dataloader\.(batch_size|num_workers|persistent_workers|'
    r'dataset\.data_root)|(val|test)_evaluator\.ann_file|train_cfg\.(max_epochs|max_iters|'
    r'val_begin)|param_scheduler\.\d\.(begin|end)|default_hooks\.logger\.interval|'
    r'log_processor\.window_size)$')


@pytest.fixture(scope='module')
def qs() -> ModuleType:
    return load_module(REPO / 'tools' / 'quickstart.py', 'quickstart')


def test_quickstart_sh_contract() -> None:
    lines = [line.strip() for line in (REPO / 'tools' / 'quickstart.sh').read_text().splitlines()
             if line.strip() and not line.startswith('#')]
    assert 'set -euo pipefail' in lines
    commands = [line for line in lines if line.startswith(('bash ', 'exec '))]
    assert commands[0] == 'bash tools/install.sh', 'the install check comes first'
    assert re.fullmatch(r'exec "\$PYTHON" tools/quickstart\.py .*"\$@"', commands[-1])


def python(*args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in the repository, one thread (as the quickstart's processes)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_smoke_run_and_readme_commands(tmp_path: Path) -> None:
    """QUICKSTART_SMOKE=1 bash tools/quickstart.sh: every stage, every output; then
    ``tools/test.py CONFIG CHECKPOINT`` reproduces each metric of the summary and
    ``tools/demo.py IMAGE CONFIG CHECKPOINT`` draws with each checkpoint."""
    work, data = tmp_path / 'work', tmp_path / 'data'
    env = dict(os.environ, QUICKSTART_SMOKE='1', TINYVIM_SKIP_INSTALL='1')
    tic = time.perf_counter()
    proc = subprocess.run(['bash', 'tools/quickstart.sh', '--work-dir', str(work),
                           '--data-root', str(data)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    took = time.perf_counter() - tic
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    out = proc.stdout
    for banner in ('install check', 'toy data (tiny)', 'training + testing', 'summary'):
        assert f'[quickstart] {banner}' in out, banner
    assert re.search(r'\[cls\] .*Epoch\(train\)', out)
    assert re.search(r'\[seg\] .*Iter\(train\)', out)
    assert '[det] $ python tools/train.py configs/mask_rcnn_tinyvim_s_toy_coco.py' in out
    assert 'paramwise_options' not in out and '\n[cls] model = dict(' not in out  # filtered
    assert 'paramwise_options' in (work / 'cls' / 'console.log').read_text()  # but kept

    summary = json.loads((work / 'summary.json').read_text())
    assert summary['smoke'] and summary['lanes'] and 0 < summary['total_s'] <= took + 5
    assert sorted(p.name for p in work.glob('*.png')) == [
        'demo_cls.png', 'demo_det.png', 'demo_seg.png', 'spectrum_cls.png']
    table = (work / 'summary.md').read_text()
    assert '| task | metric | value | it learns if | time |' in table
    assert len(re.findall(r'^\| (Classification|Mask R-CNN|Semantic FPN)', table, re.M)) == 4
    assert table.strip().splitlines()[-1] in out  # the table is printed, total row included

    # the README's commands on the quickstart's checkpoints (toy sets under `data`)
    tasks = summary['tasks']
    roots = dict(cls=data / 'imagenet', det=data / 'coco', seg=data / 'ade')
    images = dict(cls=sorted((roots['cls'] / 'val').glob('*.JPEG'))[0],
                  det=sorted((roots['det'] / 'val2017').glob('*.jpg'))[0],
                  seg=sorted((roots['seg'] / 'images' / 'validation').glob('*.jpg'))[0])

    def readme_test(task: str) -> subprocess.CompletedProcess:
        data_root = [f'test_dataloader.dataset.data_root={roots[task]}/']
        if task == 'det':
            data_root.append(f'test_evaluator.ann_file={roots[task]}/annotations/'
                             'instances_val2017.json')
        return python('tools/test.py', tasks[task]['config'], tasks[task]['checkpoint'],
                      '--work-dir', str(tmp_path / f'test_{task}'), '--cfg-options', *data_root)

    def readme_demo(task: str) -> subprocess.CompletedProcess:
        return python('tools/demo.py', str(images[task]), tasks[task]['config'],
                      tasks[task]['checkpoint'], '--out', str(tmp_path / f'{task}.png'))

    with ThreadPoolExecutor(2) as pool:
        runs = {(tool.__name__, task): pool.submit(tool, task)
                for task in ('cls', 'det', 'seg') for tool in (readme_test, readme_demo)}
    for (tool, task), run in runs.items():
        result = run.result()
        assert result.returncode == 0, (tool, task, result.stderr[-3000:])
    for task, keys in (('cls', ['accuracy/top1']), ('det', ['coco/bbox_mAP', 'coco/segm_mAP']),
                       ('seg', ['mIoU'])):
        res = tasks[task]
        assert 'error' not in res and res['config'] == f'configs/{Path(res["config"]).name}'
        assert Path(res['checkpoint']).is_file() and res['time_s'] > 0 and res['cpu_s'] > 0
        assert res['commands'][0].startswith(f'python tools/train.py {res["config"]} ')
        metrics = json.loads(next((tmp_path / f'test_{task}').glob('*/*.json')).read_text())
        for key in keys:
            assert metrics[key] == res['metrics'][key], (task, key)
        for picture in res['pictures']:
            with Image.open(picture) as img:
                assert img.format == 'PNG' and min(img.size) >= 96, picture
        with Image.open(tmp_path / f'{task}.png') as img:  # README demo: strict load, drawn
            assert img.format == 'PNG' and min(img.size) >= 256
    print(f'quickstart smoke run: {took:.0f} s')


def cfg_options(options: List[str]) -> dict:
    """``--cfg-options`` parsed as ``tools/train.py`` parses them."""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


@pytest.mark.parametrize('smoke', [False, True])
def test_runs_change_only_schedule_loaders_logging_paths(qs: ModuleType, smoke: bool) -> None:
    """The quickstart's options touch no model or pipeline key of the shipped toy configs,
    and their schedules stay consistent (the decay ends with the run)."""
    for task, spec in qs.TASKS.items():
        options = cfg_options(qs.train_options(task, 'data/toy', smoke))
        assert [k for k in options if not ALLOWED.match(k)] == [], task
        cfg = Config.fromfile(REPO / spec['config'])
        cfg.merge_from_dict(options)
        length = cfg.train_cfg.get('max_iters') or cfg.train_cfg.max_epochs
        assert cfg.param_scheduler[-1].end == length and cfg.train_cfg.val_begin > length
        assert cfg.param_scheduler[0].end <= cfg.param_scheduler[1].begin or task == 'det'
        for split in ('train', 'val', 'test'):
            loader = cfg[f'{split}_dataloader']
            assert loader.num_workers == 0 and not loader.persistent_workers
            assert loader.dataset.data_root.rstrip('/') == f'data/toy/{spec["data"]}'
        test_options = cfg_options(qs.data_options(task, 'data/toy'))
        assert set(test_options) <= set(options)
    full = cfg_options(qs.train_options('cls', 'd', smoke=False))
    assert full['train_cfg.max_epochs'] == 12 and full['train_dataloader.batch_size'] == 32
    assert cfg_options(qs.train_options('seg', 'd', False))['train_cfg.max_iters'] == 160
    assert cfg_options(qs.data_options('det', 'd'))['test_evaluator.ann_file'] == \
        'd/coco/annotations/instances_val2017.json'


def test_lanes_and_threads(qs: ModuleType) -> None:
    assert qs.plan_lanes(['cls', 'det', 'seg'], 2) == [['det'], ['seg', 'cls']]
    assert qs.plan_lanes(['cls', 'det', 'seg'], 1) == [['det', 'seg', 'cls']]
    assert qs.plan_lanes(['seg', 'cls'], 5) == [['seg'], ['cls']]
    args = qs.parse_args(['--jobs', '2'])
    assert args.threads == max(1, ((os.cpu_count() or 1) - 1) // 2)
    assert qs.parse_args(['--threads', '3']).threads == 3


def test_console_filter(qs: ModuleType) -> None:
    quiet = qs.ConsoleFilter()
    lines = ['11/22 10:00:00 - mmengine - INFO - \n', 'System environment:\n',
             '11/22 10:00:00 - mmengine - INFO - Config:\n', "model = dict(type='X')\n",
             '11/22 10:00:01 - mmengine - INFO - paramwise_options -- a:lr=1\n',
             '11/22 10:00:02 - mmengine - INFO - Epoch(train) [1][1/2] loss: 1.0\n',
             '.../x.py:17: UserWarning: pkg_resources is deprecated\n', 'Traceback (most recent)\n']
    shown = [line for line in lines if quiet.show(line)]
    assert shown == [lines[5], lines[7]]


def test_summary_table(qs: ModuleType) -> None:
    results = {
        'cls': dict(title='Cls', metrics={'accuracy/top1': 56.0}, time_s=100.0, cpu_s=60.0),
        'det': dict(title='Det', metrics={'coco/bbox_mAP': 0.05, 'coco/segm_mAP': 0.2},
                    time_s=200.0),
        'seg': dict(title='Seg', error='exit status 1', time_s=3.0),
    }
    table = qs.summary_table(results, smoke=False, total_s=321.4).splitlines()
    assert table == ['| task | metric | value | it learns if | time |', '|---|---|---|---|---|',
                     '| Cls | top-1 (%) | 56.0 ✓ | ≥ 40 | 100 s (CPU 60 s) |',
                     '| Det | bbox mAP | 0.050 ✗ | ≥ 0.1 | 200 s |',
                     '| Det | segm mAP | 0.200 ✓ | ≥ 0.1 | 200 s |',
                     '| Seg | mIoU (%) | FAILED | ≥ 30 | 3 s |',
                     '| **total** (install check, toy data, training, tests, pictures) | | | | '
                     '**321 s** |']
    smoke = qs.summary_table(results, smoke=True, total_s=1)
    assert '| Cls | top-1 (%) | 56.0 | n/a (smoke) |' in smoke
