"""tools/demo.py: the task from the config's default_scope, the toolboxes'
visualizers on randomly initialised models, and the command line.
(With trained checkpoints it runs in tests/test_quickstart.py's smoke run.)"""
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_module
from tinyvim_mm.datasets import make_toy_data

CONFIGS = {
    'cls': 'configs/tinyvim_s_toy_imagenet.py',
    'det': 'configs/mask_rcnn_tinyvim_s_toy_coco.py',
    'seg': 'configs/fpn_tinyvim_s_toy_ade.py',
}


@pytest.fixture(scope='module')
def demo() -> ModuleType:
    return load_module(REPO / 'tools' / 'demo.py', 'demo')


@pytest.fixture(scope='module')
def images(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp('toy')
    make_toy_data(root, size='tiny')
    return {
        'cls': sorted((root / 'imagenet' / 'val').glob('*.JPEG'))[0],
        'det': sorted((root / 'coco' / 'val2017').glob('*.jpg'))[0],
        'seg': sorted((root / 'ade' / 'images' / 'validation').glob('*.jpg'))[0],
    }


def test_task_and_inference_config(demo: ModuleType) -> None:
    for task, config in CONFIGS.items():
        cfg = demo.load_config(str(REPO / config))
        assert demo.task_of(cfg) == task
        pipeline = cfg.test_dataloader.dataset.pipeline
        assert 'LoadAnnotations' not in [t.type for t in pipeline]
    paper = demo.load_config(str(REPO / 'configs/tinyvim_s_8xb128_in1k.py'))
    assert paper.model.teacher is None and paper.model.teacher_checkpoint is None
    paper.default_scope = 'mmpose'
    with pytest.raises(ValueError, match='default_scope'):
        demo.task_of(paper)


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_draw_random_init(demo: ModuleType, images: dict, task: str, tmp_path: Path) -> None:
    out = tmp_path / f'{task}.png'
    assert demo.draw(str(images[task]), str(REPO / CONFIGS[task]), None, str(out)) == task
    with Image.open(images[task]) as src, Image.open(out) as drawn:
        assert drawn.format == 'PNG'
        # small images are drawn upscaled, keeping the aspect ratio
        assert min(drawn.size) == max(min(src.size), demo.MIN_SIDE // (2 if task == 'cls' else 1))
        assert abs(drawn.width / drawn.height - src.width / src.height) < 0.02
        pixels = np.asarray(drawn.convert('RGB'), np.int16)
        if task != 'det':  # random boxes may all score below the threshold
            source = np.asarray(src.convert('RGB').resize(drawn.size), np.int16)
            assert np.abs(pixels - source).mean() > 2, 'nothing drawn'


def test_cli(images: dict, tmp_path: Path) -> None:
    out = tmp_path / 'seg.png'
    proc = subprocess.run([sys.executable, 'tools/demo.py', str(images['seg']), CONFIGS['seg'],
                           '--out', str(out), '--device', 'cpu'], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(f'seg: {out}') and out.is_file()
