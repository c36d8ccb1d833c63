"""The quickstart (tools/quickstart.sh -> tools/quickstart.py): its smoke mode end to
end (tiny toy data, a couple of iterations per task, all pictures), and the pieces of
the full run (configs, lanes, console filter, summary) without training."""
import json
import os
import re
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from conftest import REPO, load_module


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


def test_smoke_run(tmp_path: Path) -> None:
    """QUICKSTART_SMOKE=1 bash tools/quickstart.sh: every stage, every output."""
    work, data = tmp_path / 'work', tmp_path / 'data'
    env = dict(os.environ, QUICKSTART_SMOKE='1', TINYVIM_SKIP_INSTALL='1')
    tic = time.perf_counter()
    proc = subprocess.run(['bash', 'tools/quickstart.sh', '--work-dir', str(work),
                           '--data-root', str(data)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400)
    took = time.perf_counter() - tic
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    out = proc.stdout
    for banner in ('install check', 'toy data (tiny)', 'training + testing', 'summary'):
        assert f'[quickstart] {banner}' in out, banner
    assert re.search(r'\[cls\] .*Epoch\(train\)', out) and re.search(r'\[seg\] .*Iter\(train\)', out)
    assert 'paramwise_options' not in out and '\n[cls] model = dict(' not in out  # filtered
    assert 'paramwise_options' in (work / 'cls' / 'console.log').read_text()  # but kept

    summary = json.loads((work / 'summary.json').read_text())
    assert summary['smoke'] and summary['lanes'] and 0 < summary['total_s'] <= took + 5
    for task, keys in (('cls', ['accuracy/top1']), ('det', ['coco/bbox_mAP', 'coco/segm_mAP']),
                       ('seg', ['mIoU'])):
        res = summary['tasks'][task]
        assert 'error' not in res, res
        assert all(key in res['metrics'] for key in keys), res['metrics']
        assert Path(res['checkpoint']).is_file() and res['time_s'] > 0
        for picture in res['pictures']:
            with Image.open(picture) as img:
                assert img.format == 'PNG' and min(img.size) >= 96, picture
    assert sorted(p.name for p in work.glob('*.png')) == [
        'demo_cls.png', 'demo_det.png', 'demo_seg.png', 'spectrum_cls.png']
    table = (work / 'summary.md').read_text()
    assert '| task | metric | value | it learns if | time |' in table
    assert len(re.findall(r'^\| (Classification|Mask R-CNN|Semantic FPN)', table, re.M)) == 4
    assert table.strip().splitlines()[-1] in out  # the table is printed, total row included
    print(f'quickstart smoke run: {took:.0f} s')


def test_full_run_configs(qs: ModuleType, tmp_path: Path) -> None:
    """The short CPU schedules are what the docs say, on top of the toy configs."""
    cls = qs.build_config('cls', 'data/toy/imagenet', str(tmp_path / 'cls'), smoke=False)
    assert cls.model.teacher is None and cls.model.train_cfg is None
    assert cls.train_cfg.max_epochs == 12 and cls.train_cfg.val_begin > 12
    assert cls.train_dataloader.dataset.pipeline[1] == dict(
        type='RandomResizedCrop', scale=64, crop_ratio_range=(0.4, 1.0), backend='pillow',
        interpolation='bicubic')
    assert cls.test_dataloader.dataset.classes == 'data/toy/imagenet/meta/classes.txt'
    assert cls.optim_wrapper.type == 'AGCOptimWrapper'  # the recipe's optimizer stays

    det = qs.build_config('det', 'data/toy/coco', str(tmp_path / 'det'), smoke=False)
    assert det.model.backbone.arch == 's' and det.model.neck.out_channels == 128
    assert det.model.roi_head.mask_head.conv_out_channels == 128
    for split in ('train', 'val', 'test'):
        steps = {t.type: t for t in det[f'{split}_dataloader'].dataset.pipeline}
        assert steps['Resize'].scale == (256, 224), split
        assert det[f'{split}_dataloader'].num_workers == 0
    assert det.test_evaluator.ann_file == 'data/toy/coco/annotations/instances_val2017.json'
    assert det.train_cfg.max_epochs == 2

    seg = qs.build_config('seg', 'data/toy/ade', str(tmp_path / 'seg'), smoke=False)
    steps = {t.type: t for t in seg.train_dataloader.dataset.pipeline}
    assert steps['RandomCrop'].crop_size == (128, 128) and steps['RandomResize'].scale == (512, 128)
    assert seg.model.data_preprocessor.size == (128, 128)
    assert seg.train_cfg.max_iters == 160 and seg.param_scheduler[1].end == 160
    with pytest.raises(ValueError, match='unknown task'):
        qs.task_overrides('pose', 'x', 'y', False)


def test_pipeline_keys_by_type(qs: ModuleType) -> None:
    from mmengine.config import Config
    cfg = Config(dict(loader=dict(pipeline=[dict(type='A'), dict(type='B', s=1)])))
    assert qs._resolve_pipeline_keys(cfg, {'loader.pipeline.B.s': 2, 'x.y': 3}) == \
        {'loader.pipeline.1.s': 2, 'x.y': 3}
    with pytest.raises(ValueError):
        qs._resolve_pipeline_keys(cfg, {'loader.pipeline.C.s': 2})


def test_lanes_and_threads(qs: ModuleType) -> None:
    assert qs.plan_lanes(['cls', 'det', 'seg'], 2) == [['det'], ['cls', 'seg']]
    assert qs.plan_lanes(['cls', 'det', 'seg'], 1) == [['det', 'cls', 'seg']]
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
    rows = qs.summary_rows(results, smoke=False)
    assert rows == [['Cls', 'top-1 (%)', '56.0 ✓', '≥ 40', '100 s (CPU 60 s)'],
                    ['Det', 'bbox mAP', '0.050 ✗', '≥ 0.1', '200 s'],
                    ['Det', 'segm mAP', '0.200 ✓', '≥ 0.1', '200 s'],
                    ['Seg', 'mIoU (%)', 'FAILED', '≥ 30', '3 s']]
    assert qs.summary_rows(results, smoke=True)[0][2:4] == ['56.0', 'n/a (smoke)']
    table = qs.markdown_table(rows, 321.4).splitlines()
    assert table[0] == '| task | metric | value | it learns if | time |' and len(table) == 7
    assert table[-1].endswith('**321 s** |')
