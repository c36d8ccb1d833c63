"""The toolboxes' own tools, run the way their docs say (``mim run mmdet ...``), on a user
config outside the repository that inherits ``tinyvim_mm::`` — nothing imported first;
and our ``tools/get_flops.py`` on detector and segmentor configs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from tinyvim_mm.datasets import make_toy_coco

pytestmark = pytest.mark.skipif(shutil.which('mim') is None, reason='openmim not installed')


def run(args, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run(args, cwd=cwd, env=dict(env, OMP_NUM_THREADS='1'), text=True,
                         capture_output=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.fixture(scope='module')
def user_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('user')
    coco = make_toy_coco(root / 'coco', num_train=2, num_val=2, img_size=(96, 128)).root
    (root / 'my_mask_rcnn.py').write_text(
        "_base_ = 'tinyvim_mm::mask_rcnn_tinyvim_s_toy_coco.py'\n"
        f"data_root = '{coco}/'\n"
        "train_dataloader = dict(dataset=dict(data_root=data_root))\n"
        "val_dataloader = dict(dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')\n"
        "test_evaluator = val_evaluator\n")
    return root


def test_mmdet_get_flops(user_project):
    out = run(['mim', 'run', 'mmdet', 'get_flops', 'my_mask_rcnn.py', '--num-images', '1'],
              user_project)
    assert 'Flops:' in out and 'Params:' in out


def test_mmdet_browse_dataset(user_project):
    run(['mim', 'run', 'mmdet', 'browse_dataset', 'my_mask_rcnn.py', '--output-dir', 'browse',
         '--not-show'], user_project)
    assert len(list((user_project / 'browse').glob('*.jpg'))) == 2


@pytest.mark.parametrize('config,shape,lo,hi', [
    ('mask_rcnn_tinyvim_s.py', ['96', '128'], 20, 120),  # RoI heads on 1000 proposals
    ('fpn_tinyvim_s_ade20k_40k.py', ['128'], 0.5, 10),
])
def test_get_flops_of_dense_configs(config, shape, lo, hi):
    out = subprocess.run([sys.executable, str(REPO / 'tools' / 'get_flops.py'),
                          str(REPO / 'configs' / config), '--shape', *shape],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    gmacs = float(out.split('params')[1].split(',')[1].split()[0])
    assert lo < gmacs < hi, out
