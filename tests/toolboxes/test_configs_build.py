"""Everything our configs reach in the three toolboxes imports and builds in the installed
environment: the modules (a package a toolbox imports without declaring it fails here,
not in a user's first run), and for every config its model, every transform of its data
pipelines, its dataset class, evaluator metrics and visualizer."""
import importlib
from pathlib import Path

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from conftest import REPO

#: What the configs, tools and tests of this project import from the toolboxes.
TOOLBOX_MODULES = [
    'mmcv.ops', 'mmdet.apis', 'mmdet.datasets', 'mmdet.evaluation', 'mmdet.models',
    'mmdet.visualization', 'mmseg.apis', 'mmseg.datasets', 'mmseg.evaluation', 'mmseg.models',
    'mmseg.utils', 'mmseg.visualization', 'mmpretrain.apis', 'mmpretrain.datasets',
    'mmpretrain.evaluation', 'mmpretrain.models', 'mmpretrain.visualization', 'mim'
]
CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py') if 'benchmark' not in p.parts)


@pytest.mark.parametrize('module', TOOLBOX_MODULES)
def test_toolbox_module_imports(module):
    importlib.import_module(module)


def _datasets(loader: ConfigDict):
    """The dataset config of a dataloader and of every dataset it wraps."""
    dataset = loader.dataset
    while dataset is not None:
        yield dataset
        dataset = dataset.get('dataset')


@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path: Path):
    cfg = Config.fromfile(path)
    scope = cfg.default_scope
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')

    model_cfg = cfg.model.copy()
    if 'teacher' in model_cfg:  # built and loaded in tests/toolboxes/test_classification.py
        model_cfg.update(teacher=None, teacher_checkpoint=None)
    model = registry.MODELS.build(model_cfg)
    assert sum(p.numel() for p in model.parameters()) > 0

    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader is None:
            continue
        for dataset in _datasets(loader):
            assert registry.DATASETS.get(dataset.type) is not None, dataset.type
            for transform in dataset.get('pipeline') or []:
                registry.TRANSFORMS.build(transform)
        evaluator = cfg.get(f'{split}_evaluator')
        for metric in ([] if evaluator is None else
                       evaluator if isinstance(evaluator, list) else [evaluator]):
            metric = dict(metric)
            metric.pop('ann_file', None)  # read at build time; the data is not here
            registry.METRICS.build(metric)
    visualizer = dict(cfg.visualizer, name=f'build_test_{path.stem}')
    registry.VISUALIZERS.build(visualizer)
