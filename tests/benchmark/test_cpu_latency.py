"""CPU latency benchmark: ONNX export or PyTorch eager, interleaved timing, ratios, table;
bad input."""
import pytest
import torch

pytest.importorskip('onnxruntime')
from tinyvim_mm.benchmark.cpu_latency import (cpu_latency, interleaved,  # noqa: E402
                                              latency_table)


def test_tinyvim_and_a_timm_peer_in_onnxruntime(tmp_path):
    rows = cpu_latency(['tinyvim-s', 'timm:resnet18'], tmp_path, reference='timm:resnet18',
                       threads=1, clock='cpu', rounds=2, per_round=1, img_size=64)
    assert [r['model'] for r in rows] == ['tinyvim-s', 'timm:resnet18']
    assert rows[1]['ratio'] == 1.0 and all(r['median_ms'] > 0 for r in rows)
    assert (tmp_path / 'tinyvim-s.onnx').is_file() and (tmp_path / 'timm_resnet18.onnx').is_file()
    table = latency_table(rows, {'tinyvim-s': 79.2})
    assert '| tinyvim-s | 79.2 |' in table and '| timm:resnet18 | — |' in table


@pytest.mark.parametrize('channels_last', [False, True])
def test_pytorch_forms_side_by_side(tmp_path, channels_last):
    """The torch runtime times the folded model, the inference form and a peer; nothing
    is exported; the inference form's top-1 is its model's; torch's thread count is
    restored."""
    threads = torch.get_num_threads()
    rows = cpu_latency(['tinyvim-s', 'tinyvim-s:fast', 'timm:resnet18'], tmp_path,
                       threads=1, clock='cpu', rounds=2, per_round=1, img_size=64,
                       runtime='torch', channels_last=channels_last)
    assert [r['model'] for r in rows] == ['tinyvim-s', 'tinyvim-s:fast', 'timm:resnet18']
    assert rows[0]['ratio'] == 1.0 and all(r['median_ms'] > 0 for r in rows)
    assert all(r['runtime'] == 'torch' and r['channels_last'] == channels_last for r in rows)
    assert not list(tmp_path.iterdir())
    assert '| tinyvim-s:fast | 79.2 |' in latency_table(rows, {'tinyvim-s': 79.2})
    assert torch.get_num_threads() == threads


def test_each_turn_settles_then_starts_with_an_untimed_call(monkeypatch):
    """Turns alternate in order (A B, B A); each begins with the settle pause and one
    untimed call, then ``per_round`` timed ones; warm-up calls are not timed."""
    log, sleeps = [], []
    monkeypatch.setattr('time.sleep', sleeps.append)
    ticks = iter(range(1000))
    times = interleaved({'a': lambda: log.append('a'), 'b': lambda: log.append('b')},
                        rounds=2, per_round=2, clock=lambda: next(ticks), warmup=1, settle=0.5)
    assert log == ['a', 'b'] + ['a'] * 3 + ['b'] * 3 + ['b'] * 3 + ['a'] * 3
    assert sleeps == [0.5] * 4
    assert {k: len(v) for k, v in times.items()} == {'a': 4, 'b': 4}
    assert all(t == 1 for v in times.values() for t in v)  # one clock tick per timed call


@pytest.mark.parametrize('kwargs,match', [
    (dict(models=['vit'], reference='vit'), 'unknown model'),
    (dict(models=['tinyvim-s'], reference='x'), 'reference'),
    (dict(models=['tinyvim-s'], clock='cpu', threads=2), 'threads=1'),
    (dict(models=['tinyvim-s'], clock='gpu'), 'clock'),
    (dict(models=['tinyvim-s'], runtime='tvm'), 'runtime must be one of'),
    (dict(models=['tinyvim-s'], channels_last=True), 'layout of the torch runtime'),
    (dict(models=['tinyvim-s:fast']), "':fast' forms are for the torch runtime"),
])
def test_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cpu_latency(out_dir=tmp_path, rounds=1, per_round=1, img_size=64, **kwargs)
