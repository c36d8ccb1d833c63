"""Exact resume through ``tools/train.py`` on the shipped toy Semantic FPN recipe
(``configs/fpn_tinyvim_s_toy_ade.py``: its pipelines and RNG-driven augmentation as they
are, a tiny backbone): a run stopped after N iterations and resumed (``--resume``,
automatic and explicit) continues with exactly the losses and weights of an uninterrupted
run; a checkpoint of another model is refused with the keys named."""
import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from conftest import REPO, load_module, tiny_seg_config
import tinyvim_mm  # noqa: F401
from tinyvim_mm.datasets import make_toy_ade


#: per-iteration losses, by experiment name
LOSSES: Dict[str, List[float]] = {}


class Interrupted(Exception):
    """Stands for a killed run."""


@HOOKS.register_module(force=True)
class RecordLossHook(Hook):
    """Records each iteration's total loss (exact float); raises ``Interrupted`` after
    iteration ``stop_at`` (after the checkpoint hook saved)."""

    priority = 'LOWEST'

    def __init__(self, stop_at: int = 0) -> None:
        self.stop_at = stop_at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        LOSSES.setdefault(runner.cfg.experiment_name, []).append(outputs['loss'].item())
        if runner.iter + 1 == self.stop_at:
            raise Interrupted(f'stopped after iteration {self.stop_at}')


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models: one thread is faster (and a busy machine does not stall OpenMP)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def toy_ade(tmp_path_factory) -> Path:
    return Path(make_toy_ade(tmp_path_factory.mktemp('toy') / 'ade', num_train=8,
                             num_val=2).root)


@pytest.fixture(scope='module')
def train_tool():
    return load_module(REPO / 'tools/train.py', 'tinyvim_train_tool')


def run(train_tool, config: Path, work_dir: Path, name: str, *args: str,
        options: Sequence[str] = ()) -> List[float]:
    """``tools/train.py CONFIG --work-dir WORK_DIR ARGS --cfg-options ...``: the losses."""
    train_tool.main([str(config), '--work-dir', str(work_dir), *args,
                     '--cfg-options', f'experiment_name={name}', *options])
    return LOSSES.get(name, [])


@pytest.fixture(scope='module')
def configs(tmp_path_factory, toy_ade) -> Dict[str, Path]:
    """4 iterations, checkpoint and validation every 2; 'killed' stops after 2."""
    root = tmp_path_factory.mktemp('configs')
    hooks = "custom_hooks = [dict(type='RecordLossHook', stop_at={})]"
    return {name: tiny_seg_config(root / f'{name}.py', toy_ade, max_iters=4,
                                 extra=hooks.format(stop_at))
            for name, stop_at in (('full', 0), ('killed', 2))}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, configs, train_tool) -> Path:
    work_dir = tmp_path_factory.mktemp('full')
    losses = run(train_tool, configs['full'], work_dir, 'full')
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    return work_dir


def test_resume_is_exact(tmp_path, configs, uninterrupted, train_tool):
    expected = LOSSES['full']
    with pytest.raises(Interrupted):
        run(train_tool, configs['killed'], tmp_path / 'run', 'killed')
    assert LOSSES['killed'] == expected[:2]
    assert (tmp_path / 'run' / 'iter_2.pth').is_file()  # validated, then "killed"
    # auto-resume from the latest checkpoint of the work dir
    resumed = run(train_tool, configs['full'], tmp_path / 'run', 'resumed', '--resume')
    assert resumed == expected[2:], (resumed, expected)
    final = torch.load(tmp_path / 'run' / 'iter_4.pth', weights_only=True)
    reference = torch.load(uninterrupted / 'iter_4.pth', weights_only=True)
    for key, value in reference['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key
    assert final['meta']['iter'] == 4

    # an explicit checkpoint without the RNG states: same data order (seed, skipped
    # batches) but other random draws (augmentation, dropout), so other losses
    ckpt = torch.load(tmp_path / 'run' / 'iter_2.pth', weights_only=True)
    del ckpt['rng_states']
    torch.save(ckpt, tmp_path / 'no_rng.pth')
    plain = run(train_tool, configs['full'], tmp_path / 'plain', 'plain', '--resume',
                str(tmp_path / 'no_rng.pth'))
    assert len(plain) == 2 and plain != expected[2:]


def test_resume_other_model_refused(tmp_path, configs, uninterrupted, train_tool):
    with pytest.raises(RuntimeError, match=r'Cannot resume from this checkpoint: .*shape '
                       r'mismatches: .*neck\..*checkpoint \(16, .*vs model \(8, '):
        run(train_tool, configs['full'], tmp_path, 'refused', '--resume',
            str(uninterrupted / 'iter_4.pth'),
            options=['model.neck.out_channels=8', 'model.decode_head.in_channels=[8,8,8,8]'])
    assert 'refused' not in LOSSES, 'trained a half-loaded model'


def test_resume_keeps_checkpoint_seed(tmp_path, train_tool):
    """A config without a seed resumes with the checkpoint's (samplers are seeded before
    the checkpoint is read)."""
    from mmengine.config import Config
    torch.save(dict(meta=dict(seed=1234, iter=3)), tmp_path / 'iter_3.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_3.pth'))
    cfg = Config(dict(work_dir=str(tmp_path), resume=True, load_from=None))
    train_tool.keep_checkpoint_seed(cfg)
    assert cfg.randomness == dict(seed=1234)
    cfg = Config(dict(work_dir=str(tmp_path), randomness=dict(seed=5), load_from=None))
    train_tool.keep_checkpoint_seed(cfg)
    assert cfg.randomness.seed == 5


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))
