"""Shared fixtures: the released-model fixtures of ``../shared`` and helpers."""
import importlib.util
import json
import os
import subprocess
import sys
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


@pytest.fixture
def no_tf32():
    """Full float32 matrix products on the GPU (TF32 off) for the test, restored after."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


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


def run_interpreted(module: str, function: str = 'interpreter_results') -> dict:
    """``function()`` of the test module ``module`` (in ``tests/ops``), run in a subprocess
    under Triton's CPU interpreter (``TRITON_INTERPRET=1`` must be set before Triton
    compiles anything), and its JSON-serialised result. Skips without Triton, and where a
    GPU is (the real kernels are tested there)."""
    pytest.importorskip('triton')
    if torch.cuda.is_available():
        pytest.skip('a GPU is here: the real kernels are tested (test_*_on_gpu)')
    paths = [str(p) for p in (REPO, REPO / 'tests', REPO / 'tests' / 'ops')]
    env = dict(os.environ, TRITON_INTERPRET='1',
               PYTHONPATH=os.pathsep.join(paths + [os.environ.get('PYTHONPATH', '')]))
    code = f'import json, {module} as m; print(json.dumps(m.{function}()))'
    proc = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


WIDTHS = (8, 16, 24, 32)  # a tiny TinyViM for runner tests


def tiny_seg_config(path: Path, data_root: Path, max_iters: int = 6, extra: str = '',
                    base: str = str(REPO / 'configs' / 'fpn_tinyvim_s_toy_ade.py')) -> Path:
    """A config inheriting the toy Semantic FPN recipe (``base``) with overrides only: a
    tiny TinyViM and narrow heads, the toy set at ``data_root`` loaded in the main
    process, ``max_iters`` iterations with checkpoint and validation half-way."""
    path.write_text(f"""
_base_ = {base!r}
custom_imports = dict(imports=['tinyvim_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(arch=dict(_delete_=True, widths={WIDTHS}, depths=(1, 1, 2, 1)),
                  scan_backend='torch'),
    neck=dict(in_channels={list(WIDTHS)}, out_channels=16),
    decode_head=dict(in_channels=[16, 16, 16, 16], channels=16))
loader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={str(data_root)!r}))
train_dataloader = dict(batch_size=2, **loader)
val_dataloader = test_dataloader = loader
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end={max_iters},
                        by_epoch=False)]
train_cfg = dict(max_iters={max_iters}, val_interval={max(max_iters // 2, 1)})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={max(max_iters // 2, 1)}))
randomness = dict(seed=0)
{extra}
""")
    return path
