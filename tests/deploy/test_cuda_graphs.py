"""CUDA-graph replay of inference forwards (tinyvim_mm.ops.cuda_graphs, exported by
tinyvim_mm.deploy)."""
import copy

import pytest
import torch

from conftest import randomise_bn
from tinyvim_mm.deploy import (cuda_graphs_enabled, disable_cuda_graphs, enable_cuda_graphs,
                               optimize_for_inference)
from tinyvim_mm.ops.cuda_graphs import GraphedForward
from tinyvim_mm.models import TinyViM

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def _backbone(arch: str = 's') -> TinyViM:
    torch.manual_seed(0)
    return randomise_bn(TinyViM(arch)).eval()


def test_enable_keeps_the_module_and_runs_cpu_inputs_eagerly():
    model = _backbone()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        keys = list(model.state_dict())
        enable_cuda_graphs(model)
        assert cuda_graphs_enabled(model)
        got = model(x)
    assert list(model.state_dict()) == keys
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert not model.forward.graphs  # a CPU input never captures
    clone = copy.deepcopy(model)
    assert cuda_graphs_enabled(clone) and clone.forward.module is clone
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(clone(x), expected))
    disable_cuda_graphs(model)
    assert not cuda_graphs_enabled(model) and 'forward' not in model.__dict__


def test_bad_use_is_refused():
    model = _backbone()
    with pytest.raises(ValueError, match='max_graphs'):
        enable_cuda_graphs(model, max_graphs=0)
    enable_cuda_graphs(model)
    with pytest.raises(ValueError, match='already replays'):
        enable_cuda_graphs(model)
    other = _backbone()
    other.forward = lambda x: x
    with pytest.raises(ValueError, match='instance-level forward'):
        enable_cuda_graphs(other)


def test_only_plain_inference_calls_qualify():
    model = _backbone()
    graphed = GraphedForward(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not graphed.applies((x, ), {})  # CPU
    if torch.cuda.is_available():
        model.cuda()
        xc = x.cuda()
        assert graphed.applies((xc, ), {}) is False  # gradients enabled
        with torch.no_grad():
            assert graphed.applies((xc, ), {})
            assert not graphed.applies((xc, xc), {})
            assert not graphed.applies((xc, ), dict(extra=1))
            model.train()
            assert not graphed.applies((xc, ), {})


@gpu
@pytest.mark.parametrize('dtype', [None, torch.float16])
def test_replay_matches_eager_per_shape_on_gpu(dtype):
    """Outputs from the graphs equal the eager forward's up to float rounding; one graph
    per shape and autocast state; outputs are copies that stay valid after the next call.

    Not bit for bit: under capture cuDNN may pick other (TF32, PyTorch's default for
    convolutions) algorithms than the eager call did, and the Triton scan adds its four
    directions atomically: 9e-5 relative in float32 on an H200. A stale or overwritten
    buffer would be off by O(1); the tolerance is the inference form's (1e-3 of the
    float32 model) and, in fp16, that of half precision."""
    model = optimize_for_inference(_backbone('b'), fold_axial=True).cuda()
    shapes = [(2, 3, 224, 320), (1, 3, 256, 256)]
    inputs = [torch.randn(s, device='cuda') for s in shapes]
    autocast = torch.autocast('cuda', dtype=dtype or torch.float16, enabled=dtype is not None)
    with torch.no_grad(), autocast:
        expected = [model(x) for x in inputs]
        enable_cuda_graphs(model)
        results = []
        for _ in range(3):
            results.append([model(x) for x in inputs])
    assert len(model.forward.graphs) == 2
    tol = 1e-3 if dtype is None else 5e-3
    for got in results:  # the first round ran eagerly, the others from the graphs
        for outs, refs in zip(got, expected):
            for out, ref in zip(outs, refs):
                assert out.shape == ref.shape and out.dtype == ref.dtype
                rel = float((out.float() - ref.float()).norm() / ref.float().norm())
                assert rel < tol, rel
    assert results[1][0][0].data_ptr() != results[2][0][0].data_ptr()


@gpu
def test_graphs_of_two_dtypes_interleaved_on_gpu():
    """A float32 graph and an fp16-autocast graph of one model, called in turn: each
    replays the weights its dtype's calls prepared (the fused FFN's cast and transposed
    weights, the mixers' folded scan projection), which the other dtype's calls must not
    free (a single cache slot did: the float32 graph then read freed memory)."""
    model = optimize_for_inference(_backbone('s'), fold_axial=True).cuda()
    x = torch.randn(2, 3, 224, 224, device='cuda')
    half = torch.autocast('cuda', dtype=torch.float16)
    with torch.no_grad():
        expected = model(x)
        with half:
            expected_half = model(x)
        enable_cuda_graphs(model)
        fillers = []
        for _ in range(4):  # eager, capture, replay, replay (per dtype)
            got = model(x)
            with half:
                got_half = model(x)
            # take whatever the calls freed, with garbage, while the graphs replay
            fillers.append([torch.randn_like(p, dtype=dtype) for p in model.parameters()
                            for dtype in (torch.float32, torch.float16)])
            for outs, refs, tol in ((got, expected, 1e-3), (got_half, expected_half, 5e-3)):
                for out, ref in zip(outs, refs):
                    rel = float((out.float() - ref.float()).norm() / ref.float().norm())
                    assert rel < tol, rel
    assert len(model.forward.graphs) == 2


def test_structured_inputs_qualify_only_as_tensors():
    """Necks and heads take tuples / lists of maps: those qualify (on CUDA); anything
    holding a non-tensor does not, and a signature tells structures and layouts apart."""
    from tinyvim_mm.ops.cuda_graphs import _empty_like, _flatten, _signature
    maps = (torch.randn(1, 4, 8, 8), [torch.randn(1, 4, 4, 4)])
    assert [t.shape for t in _flatten(maps)] == [(1, 4, 8, 8), (1, 4, 4, 4)]
    assert _flatten((maps[0], 'meta')) is None and _flatten(()) is None
    assert _signature(maps) != _signature((maps[0], tuple(maps[1])))
    assert _signature(maps[0]) != _signature(maps[0].contiguous(memory_format=torch.channels_last))
    copy = _empty_like(maps)
    assert type(copy[1]) is list and copy[0].stride() == maps[0].stride()
    graphed = GraphedForward(_backbone())
    with torch.no_grad():
        assert not graphed.applies((maps, ), {})  # CPU tensors


@gpu
def test_neck_with_tuple_inputs_on_gpu():
    """mmdet's FPN neck (a tuple of maps in, a tuple out) from its graph equals eager."""
    from mmdet.models.necks import FPN
    torch.manual_seed(0)
    neck = FPN([48, 96, 192, 384], 64, num_outs=5).cuda().eval()
    maps = tuple(torch.randn(2, c, 200 // 2**i, 336 // 2**i, device='cuda')
                 for i, c in enumerate([48, 96, 192, 384]))
    with torch.no_grad():
        expected = neck(maps)
        enable_cuda_graphs(neck)
        outs = [neck(maps) for _ in range(3)]
    assert len(neck.forward.graphs) == 1
    for got in outs:
        assert isinstance(got, tuple) and len(got) == 5
        for a, b in zip(got, expected):
            assert float((a - b).norm() / b.norm()) < 1e-3


@gpu
def test_moved_parameters_and_the_graph_limit_on_gpu():
    model = _backbone().cuda()
    enable_cuda_graphs(model, max_graphs=1)
    x, y = torch.randn(1, 3, 128, 128, device='cuda'), torch.randn(1, 3, 96, 160, device='cuda')
    with torch.no_grad():
        for _ in range(2):
            model(x), model(y)
        assert len(model.forward.graphs) == 1  # y ran eagerly: the limit
        kept = [t.data for t in [*model.parameters(), *model.buffers()]]  # no address reuse
        model.cpu().cuda()  # new storage for every tensor: the graphs are stale
        out = model(x)
        assert not model.forward.graphs  # dropped; this call ran eagerly
        ref = type(model).forward(model, x)
        for _ in range(2):
            out = model(x)
        assert len(model.forward.graphs) == 1
    del kept
    for a, b in zip(out, ref):
        assert float((a - b).norm() / b.norm()) < 1e-3


def test_graphs_are_dropped_when_weights_change_in_place():
    """A graph replays the tensors it was captured with; tensors a module derives from its
    parameters (the Laplace mixer's folded scan projection) would stay stale after
    ``load_state_dict``, so an in-place change drops the graphs like a move does."""
    model = _backbone()
    graphed = GraphedForward(model)
    graphed._tensors = [*model.parameters(), *model.buffers()]
    graphed._state = graphed._tensor_state()
    graphed.graphs['signature'] = object()  # a captured graph, as far as the check goes
    graphed.seen.add('signature')
    graphed._drop_if_changed()
    assert graphed.graphs  # nothing changed
    with torch.no_grad():
        model.load_state_dict(model.state_dict())  # copies in place: new versions
    graphed._drop_if_changed()
    assert not graphed.graphs and not graphed.seen


@pytest.mark.parametrize('graphs', [True, False])
def test_inference_form_hook_graphs_the_tinyvim_backbone(graphs):
    """``tools/test.py --deploy``'s hook folds the model and (by default) makes its TinyViM
    backbone replay CUDA graphs; the rest of the model is left as it is."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger

    from tinyvim_mm.engine.hooks import InferenceFormHook
    from tinyvim_mm.models import TinyViMClassifier
    model = TinyViMClassifier('s')
    runner = SimpleNamespace(model=model, logger=MMLogger.get_current_instance())
    InferenceFormHook(cuda_graphs=graphs).before_test(runner)
    assert model.backbone.deploy and not model.training
    assert cuda_graphs_enabled(model.backbone) == graphs
    assert not cuda_graphs_enabled(model)
    assert model.backbone.patch_embed[0].reparam.weight.is_contiguous(
        memory_format=torch.channels_last)  # the inference form's backbone layout
    with pytest.raises(ValueError, match='max_graphs'):
        InferenceFormHook(max_graphs=0)
    with pytest.raises(ValueError, match="Unknown selective-scan backend 'trition'"):
        InferenceFormHook(scan_backend='trition')
