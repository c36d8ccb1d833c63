"""ONNX Runtime latency benchmark: export, interleaved timing, ratios, table; bad input."""
import pytest

pytest.importorskip('onnxruntime')
from tinyvim_mm.benchmark.onnx_latency import latency_table, onnx_latency  # noqa: E402


def test_tinyvim_and_a_timm_peer(tmp_path):
    rows = onnx_latency(['tinyvim-s', 'timm:resnet18'], tmp_path, reference='timm:resnet18',
                        threads=1, clock='cpu', rounds=2, per_round=1, img_size=64)
    assert [r['model'] for r in rows] == ['tinyvim-s', 'timm:resnet18']
    assert rows[1]['ratio'] == 1.0 and all(r['median_ms'] > 0 for r in rows)
    assert (tmp_path / 'tinyvim-s.onnx').is_file() and (tmp_path / 'timm_resnet18.onnx').is_file()
    table = latency_table(rows, {'tinyvim-s': 79.2})
    assert '| tinyvim-s | 79.2 |' in table and '| timm:resnet18 | — |' in table


@pytest.mark.parametrize('kwargs,match', [
    (dict(models=['vit'], reference='vit'), 'unknown model'),
    (dict(models=['tinyvim-s'], reference='x'), 'reference'),
    (dict(models=['tinyvim-s'], clock='cpu', threads=2), 'threads=1'),
    (dict(models=['tinyvim-s'], clock='gpu'), 'clock'),
])
def test_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        onnx_latency(out_dir=tmp_path, rounds=1, per_round=1, img_size=64, **kwargs)
