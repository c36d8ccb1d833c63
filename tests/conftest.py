"""Shared fixtures: the released-model fixtures of ``../shared`` and helpers."""
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get('TINYVIM_SHARED', REPO.parent / 'shared')) / 'fixtures' / 'official_tinyvim'


def load_module(path: Path, name: str) -> ModuleType:
    """A Python file (a tool script, ``setup.py``, a fixture) imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def fixtures_dir() -> Path:
    if not (FIXTURES / 'synth_weights.py').is_file():
        raise FileNotFoundError(
            f'Released-model fixtures not found at {FIXTURES}; put the shared folder beside '
            'the repository or set TINYVIM_SHARED')
    return FIXTURES


@pytest.fixture(scope='session')
def synth(fixtures_dir: Path) -> ModuleType:
    """The fixtures' ``synth_weights`` module (deterministic released-layout weights)."""
    return load_module(fixtures_dir / 'synth_weights.py', 'synth_weights')


@pytest.fixture(scope='session')
def reference_s(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / 'reference_s.pt', weights_only=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomise_bn(module: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that folding
    is actually exercised; returns ``module``."""
    gen = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return module
