"""tinyvim_mm.apis.inference and tools/demo.py: the task from the config's default_scope,
the toolboxes' visualizers on randomly initialised models, strict checkpoints (a
checkpoint that does not fit is refused with its keys named), the image checked before
any model is built, and the command line. (With trained checkpoints: the quickstart's
smoke run in tests/tools/test_quickstart.py.)"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from tinyvim_mm.apis import CheckpointMismatchError, draw, inference
from tinyvim_mm.datasets import TOY_ADE_CLASSES, make_toy_data

CONFIGS = {
    'cls': 'configs/tinyvim_s_toy_imagenet.py',
    'det': 'configs/mask_rcnn_tinyvim_s_toy_coco.py',
    'seg': 'configs/fpn_tinyvim_s_toy_ade.py',
}


@pytest.fixture(scope='module')
def images(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp('toy')
    make_toy_data(root, size='tiny')
    return {
        'cls': sorted((root / 'imagenet' / 'val').glob('*.JPEG'))[0],
        'det': sorted((root / 'coco' / 'val2017').glob('*.jpg'))[0],
        'seg': sorted((root / 'ade' / 'images' / 'validation').glob('*.jpg'))[0],
    }


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the toy Semantic FPN model (random weights, toolbox metadata)."""
    cfg = inference.load_inference_config(str(REPO / CONFIGS['seg']))
    model = inference.init_model(cfg)
    path = tmp_path_factory.mktemp('ckpt') / 'seg.pth'
    meta = dict(dataset_meta=dict(classes=[f'c{i}' for i in range(7)], palette=[[0, 0, 0]] * 7))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


def test_task_and_inference_config() -> None:
    for task, config in CONFIGS.items():
        cfg = inference.load_inference_config(str(REPO / config))
        assert inference.task_of(cfg) == task
        pipeline = cfg.test_dataloader.dataset.pipeline
        assert 'LoadAnnotations' not in [t.type for t in pipeline]
    paper = inference.load_inference_config(str(REPO / 'configs/tinyvim_s_8xb128_in1k.py'))
    assert paper.model.teacher is None and paper.model.teacher_checkpoint is None
    paper.default_scope = 'mmpose'
    with pytest.raises(ValueError, match='default_scope'):
        inference.task_of(paper)


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_draw_random_init(images: dict, task: str, tmp_path: Path) -> None:
    out = tmp_path / f'{task}.png'
    assert draw(str(images[task]), str(REPO / CONFIGS[task]), None, str(out)) == task
    with Image.open(images[task]) as src, Image.open(out) as drawn:
        assert drawn.format == 'PNG'
        # small images are drawn upscaled, keeping the aspect ratio
        side = inference.MIN_SIDE // (2 if task == 'cls' else 1)
        assert min(drawn.size) == max(min(src.size), side)
        assert abs(drawn.width / drawn.height - src.width / src.height) < 0.02
        pixels = np.asarray(drawn.convert('RGB'), np.int16)
        if task != 'det':  # random boxes may all score below the threshold
            source = np.asarray(src.convert('RGB').resize(drawn.size), np.int16)
            assert np.abs(pixels - source).mean() > 2, 'nothing drawn'


def test_fitting_checkpoint_is_loaded(seg_checkpoint: Path) -> None:
    cfg = inference.load_inference_config(str(REPO / CONFIGS['seg']))
    model = inference.init_model(cfg, str(seg_checkpoint))
    saved = torch.load(seg_checkpoint, weights_only=True)
    for key, value in saved['state_dict'].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.dataset_meta['classes'] == [f'c{i}' for i in range(7)]  # the checkpoint's
    assert tuple(inference.init_model(cfg).dataset_meta['classes']) == TOY_ADE_CLASSES


def test_unfit_checkpoint_is_refused(images: dict, seg_checkpoint: Path,
                                     tmp_path: Path) -> None:
    state_dict = torch.load(seg_checkpoint, weights_only=True)['state_dict']
    del state_dict['decode_head.conv_seg.bias']
    state_dict['decode_head.extra.weight'] = torch.zeros(1)
    state_dict['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 48, 1, 1)
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=state_dict), bad)
    out = tmp_path / 'seg.png'
    with pytest.raises(CheckpointMismatchError) as err:
        draw(str(images['seg']), str(REPO / CONFIGS['seg']), str(bad), str(out))
    message = str(err.value)
    assert "missing keys: ['decode_head.conv_seg.bias']" in message
    assert "unexpected keys: ['decode_head.extra.weight']" in message
    assert 'neck.lateral_convs.0.conv.weight: checkpoint (8, 48, 1, 1) vs model' in message
    assert not out.exists()


def test_image_checked_before_any_model(images: dict, seg_checkpoint: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError('a model was built before the image was checked')

    monkeypatch.setattr(inference, 'init_model', no_model)
    monkeypatch.setattr(inference, 'load_inference_config', no_model)
    missing = tmp_path / 'nope.jpg'
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        draw(str(missing), CONFIGS['seg'], str(seg_checkpoint), str(tmp_path / 'o.png'))
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    with pytest.raises(ValueError, match='notes.jpg.* not a readable image'):
        draw(str(text), CONFIGS['seg'], str(seg_checkpoint), str(tmp_path / 'o.png'))
    img = inference.read_image(str(images['det']))
    with Image.open(images['det']) as src:
        assert img.shape == (src.height, src.width, 3) and img.dtype == np.uint8


def test_cli(images: dict, seg_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / 'seg.png'
    proc = subprocess.run([sys.executable, 'tools/demo.py', str(images['seg']), CONFIGS['seg'],
                           str(seg_checkpoint), '--out', str(out), '--device', 'cpu'],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(f'seg: {out}') and out.is_file()
    # errors: a message naming the file, no traceback, no picture
    proc = subprocess.run([sys.executable, 'tools/demo.py', str(tmp_path / 'missing.jpg'),
                           CONFIGS['det'], '--out', str(tmp_path / 'x.png')], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().endswith(f"demo.py: error: Image '{tmp_path / 'missing.jpg'}' "
                                        'not found')
    assert not (tmp_path / 'x.png').exists()
