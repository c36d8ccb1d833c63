"""Safe checkpoint loading: MMEngine checkpoints load with ``weights_only=True`` through the
allow-list; code-running, truncated and mismatched checkpoints are refused clearly."""
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader

from tinyvim_mm.checkpoint import (UnsafeCheckpointError, load_local_checkpoint,
                                   read_checkpoint_meta, use_safe_loader)
from tinyvim_mm.engine.hooks import (CheckpointGuardHook, check_state_dict, get_rng_states,
                                     set_rng_states)

use_safe_loader()  # MMEngine's CheckpointLoader reads local files through ours


def mmengine_like_checkpoint() -> dict:
    """What ``Runner.save_checkpoint`` writes (message hub with HistoryBuffers, numpy
    scalars and arrays in the meta), plus the guard hook's RNG states."""
    hub = MessageHub(f'safe_load_{os.getpid()}')
    for value in (1.5, 0.5):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(12.5))
    hub.update_info('dataset_meta', dict(classes=('a', 'b'), palette=np.array([[1, 2, 3]])))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    checkpoint = dict(
        meta=dict(epoch=1, iter=10, seed=np.int64(7), cfg='x = 1',
                  dataset_meta=dict(classes=('a', 'b'))),
        state_dict=model.state_dict(), message_hub=hub.state_dict(),
        optimizer=optimizer.state_dict(),
        param_schedulers=[dict(base_lrs=[0.1], last_epoch=np.int32(3))])
    CheckpointGuardHook().before_save_checkpoint(None, checkpoint)
    return checkpoint


class Exploit:
    """Unpickling it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class SneakyGetattr:
    """``getattr`` is the usual first step of a code-running pickle."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_mmengine_checkpoint_loads_weights_only(tmp_path):
    path = tmp_path / 'iter_10.pth'
    saved = mmengine_like_checkpoint()
    torch.save(saved, path)
    allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError):  # torch's defaults refuse it ...
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(allowed)
    for loaded in (torch.load(path, weights_only=True),  # ... with the allow-list it loads
                   CheckpointLoader.load_checkpoint(str(path), map_location='cpu')):
        assert loaded['meta']['seed'] == 7 and loaded['meta']['iter'] == 10
        hub = MessageHub('safe_load_restored')
        hub.load_state_dict(loaded['message_hub'])
        assert hub.get_scalar('train/loss').mean() == 1.0
        assert hub.get_info('eta') == 12.5
        np.testing.assert_array_equal(hub.get_info('dataset_meta')['palette'], [[1, 2, 3]])
        for key, value in saved['state_dict'].items():
            assert torch.equal(loaded['state_dict'][key], value)
        assert loaded['optimizer']['state'][0]['step'] == 1
    assert read_checkpoint_meta(str(path))['epoch'] == 1


def test_code_running_checkpoint_refused(tmp_path):
    marker = tmp_path / 'pwned'
    for name, kwargs in (('zip.pth', {}), ('legacy.pth', dict(
            _use_new_zipfile_serialization=False))):
        path = tmp_path / name
        torch.save({'state_dict': {}, 'meta': Exploit(marker)}, path, **kwargs)
        with pytest.raises(UnsafeCheckpointError, match=f'Refusing to load .*{name}'):
            CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists(), 'the payload ran'
    with pytest.raises(UnsafeCheckpointError, match='posix.system|os.system'):
        load_local_checkpoint(str(tmp_path / 'zip.pth'))
    # getattr is allowed for HistoryBuffer's statistics methods only
    torch.save({'meta': SneakyGetattr()}, tmp_path / 'getattr.pth')
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        load_local_checkpoint(str(tmp_path / 'getattr.pth'))


def test_truncated_and_missing_checkpoints(tmp_path):
    path = tmp_path / 'full.pth'
    torch.save(mmengine_like_checkpoint(), path)
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match='truncated or not a torch checkpoint'):
        CheckpointLoader.load_checkpoint(str(truncated), map_location='cpu')
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(RuntimeError, match='truncated or not a torch checkpoint'):
        load_local_checkpoint(str(tmp_path / 'text.pth'))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'missing.pth'))


def test_state_dict_check_names_differences():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), bn=nn.BatchNorm2d(4)))
    state = {f'module.{k}': v for k, v in model.state_dict().items()}
    assert check_state_dict(model, state) == []
    state.pop('module.bn.running_var')
    state['module.conv.weight'] = torch.zeros(8, 3, 3, 3)
    state['module.head.weight'] = torch.zeros(1)
    problems = '; '.join(check_state_dict(model, state))
    assert "missing keys: ['bn.running_var']" in problems
    assert "unexpected keys: ['head.weight']" in problems
    assert 'conv.weight: checkpoint (8, 3, 3, 3) vs model (4, 3, 3, 3)' in problems


def test_rng_states_roundtrip(tmp_path):
    states = get_rng_states()
    expected = (np.random.rand(3), torch.rand(3), __import__('random').random())
    torch.save(states, tmp_path / 'rng.pth')
    set_rng_states(torch.load(tmp_path / 'rng.pth', weights_only=True))
    again = (np.random.rand(3), torch.rand(3), __import__('random').random())
    np.testing.assert_array_equal(expected[0], again[0])
    assert torch.equal(expected[1], again[1]) and expected[2] == again[2]
