"""ONNX export of the folded classifier (``tools/export_onnx.py``): onnxruntime
matches PyTorch for other batch sizes and input sizes than the traced one."""

import pytest

from conftest import REPO, load_module

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')


def load_tool():
    return load_module(REPO / 'tools' / 'export_onnx.py', 'export_onnx')


def test_export_matches_pytorch(tmp_path, capsys):
    tool = load_tool()
    path = tmp_path / 'tinyvim_s.onnx'
    # traced at 64x64; checked at another batch, another size and a size that is
    # not a multiple of 32 (partial pooling windows)
    tool.main(['--arch', 's', '--output', str(path), '--img-size', '64', '--check-shapes',
               '2x3x64x64', '1x3x96x64', '1x3x100x75'])
    lines = capsys.readouterr().out.splitlines()
    errors = [float(line.rsplit(' ', 1)[1]) for line in lines if 'max abs diff' in line]
    assert len(errors) == 3 and max(errors) <= 1e-4, lines
    import onnx
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ['batch', '', 'height', 'width']


def test_export_loads_released_checkpoint(tmp_path, synth, fixtures_dir):
    """A released classifier checkpoint is converted and loaded strictly."""
    import torch
    tool = load_tool()
    ckpt = tmp_path / 'released.pth'
    torch.save({'model': synth.synth_state_dict(fixtures_dir / 'keys_s.json')}, ckpt)
    model = tool.load_classifier('s', str(ckpt), 1000)
    state = synth.synth_state_dict(fixtures_dir / 'keys_s.json')
    assert torch.equal(model.head.head.weight, state['head.weight'])
    assert torch.equal(model.backbone.patch_embed[0].c.weight, state['patch_embed.0.c.weight'])
