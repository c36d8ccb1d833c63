"""Size arithmetic of the export forms (:mod:`tinyvim_mm.ops.onnx_shapes`): in PyTorch the
plain ops (gradients too); exported with dynamic sizes, onnxruntime gives the same at
sizes other than the traced one, from one or two nodes per op."""
from collections import Counter

import numpy as np
import pytest
import torch

from tinyvim_mm.ops.onnx_shapes import Size, causal_mask, crop_like, pad_to_multiple, reshape

CASES = {
    'reshape_keep_infer': (lambda x: reshape(x.permute(0, 2, 3, 1), [0, -1, 3]),
                           lambda x: x.permute(0, 2, 3, 1).flatten(1, 2)),
    'reshape_size_of_ref': (lambda x: reshape(reshape(x, [0, 0, -1]), [0, 3, Size(3), -1], x),
                            lambda x: x.flatten(2).unflatten(2, (x.shape[3], -1))),
    'crop_like': (lambda x: crop_like(x * 2, x[:, :, 1:, 2:]),
                  lambda x: (x * 2)[:, :, :x.shape[2] - 1, :x.shape[3] - 2]),
    'crop_like_one_dim': (lambda x: crop_like(x + 1, x[:, :, 3:], dims=(2, )),
                          lambda x: (x + 1)[:, :, :x.shape[2] - 3]),
    'pad_to_multiple': (lambda x: pad_to_multiple(x, 2, 5),
                        lambda x: torch.nn.functional.pad(x, (0, 0, 0, -x.shape[2] % 5))),
    'pad_to_multiple_last_dim': (lambda x: pad_to_multiple(x, 3, 4),
                                 lambda x: torch.nn.functional.pad(x, (0, -x.shape[3] % 4))),
    'causal_mask': (lambda x: causal_mask(x, 2, trailing=2),
                    lambda x: torch.ones(x.shape[2], x.shape[2]).tril(-1)[:, :, None, None]),
}


class Wrap(torch.nn.Module):

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize('name', sorted(CASES))
def test_plain_in_pytorch_with_gradients(name):
    ours, plain = CASES[name]
    x = torch.randn(2, 3, 7, 9, requires_grad=True)
    y = ours(x)
    torch.testing.assert_close(y, plain(x), rtol=0, atol=0)
    if not y.requires_grad:  # a mask: a function of x's shape only
        return
    y.sum().backward()
    grad, x.grad = x.grad, None
    plain(x).sum().backward()
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=0)


@pytest.mark.parametrize('name', sorted(CASES))
def test_exported_with_dynamic_sizes(name, tmp_path):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    import onnx
    ours, plain = CASES[name]
    path = str(tmp_path / 'op.onnx')
    torch.onnx.export(Wrap(ours), (torch.randn(1, 3, 4, 5), ), path, dynamo=False,
                      opset_version=17, input_names=['x'],
                      dynamic_axes={'x': {0: 'b', 2: 'h', 3: 'w'}})
    ops = Counter(n.op_type for n in onnx.load(path).graph.node if n.op_type != 'Constant')
    # the sizes come from Shape nodes with start / end, not Shape -> Gather -> Unsqueeze chains
    assert not ops & Counter(['Gather', 'Cast', 'Div']), ops
    assert sum(ops.values()) <= 5, ops
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for shape in [(2, 3, 7, 9), (1, 3, 12, 3)]:
        x = torch.randn(shape)
        got = session.run(None, {'x': x.numpy()})[0]
        np.testing.assert_array_equal(got, plain(x).numpy())


def test_bad_arguments():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match='needs the reference tensor'):
        reshape(x, [0, Size(1), -1])
    with pytest.raises(ValueError, match='at most one -1'):
        reshape(x, [-1, -1])
    with pytest.raises(ValueError, match='3-d input does not have'):
        reshape(x, [0, 3, -1, 0])
    with pytest.raises(ValueError, match='consecutive'):
        crop_like(x, x, dims=(0, 2))
    with pytest.raises(ValueError, match='dim must be in'):
        pad_to_multiple(x, 3, 2)
    with pytest.raises(ValueError, match='float32'):
        causal_mask(x.double(), 0)
