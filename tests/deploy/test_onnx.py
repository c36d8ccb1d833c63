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
    # the fast export form: vectorised softplus, no Einsum, the head folded into one Gemm
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & {'Softplus', 'Einsum', 'BatchNormalization'}, ops
    # sizes read by Shape nodes once per use (tinyvim_mm.ops.onnx_shapes): 1,135 nodes
    # besides constants, where the exporter's own size arithmetic wrote 1,482
    assert sum(node.op_type != 'Constant' for node in graph.graph.node) <= 1150


def test_export_reads_class_count_and_arch_from_checkpoint(tmp_path, capsys):
    """A 10-class B checkpoint exports without --arch / --num-classes."""
    import torch

    from tinyvim_mm.models import TinyViMClassifier
    ckpt = tmp_path / 'b10.pth'
    torch.save({'state_dict': TinyViMClassifier('b', num_classes=10).state_dict()}, ckpt)
    path = tmp_path / 'b10.onnx'
    load_tool().main(['--checkpoint', str(ckpt), '--output', str(path), '--img-size', '64',
                      '--check-shapes', '1x3x64x64'])
    out = capsys.readouterr().out
    assert '10 classes' in out
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    logits = session.run(None, {'input': torch.randn(1, 3, 64, 64).numpy()})[0]
    assert logits.shape == (1, 10)


def test_export_needs_opset_15(tmp_path):
    from tinyvim_mm.deploy import export_onnx
    from tinyvim_mm.models import TinyViMClassifier
    with pytest.raises(ValueError, match='opset >= 15'):
        export_onnx(TinyViMClassifier('s').eval(), str(tmp_path / 'm.onnx'), 64, opset=14)
