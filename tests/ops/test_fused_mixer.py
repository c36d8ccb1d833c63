"""The fused Laplace mixer (:mod:`tinyvim_mm.ops.mixer`, ``FusedLaplaceMixer``).

References: the ops the mixer runs without them (``F.silu``, ``F.avg_pool2d``,
``F.interpolate``, ``F.conv2d``, ``torch.cat``), and the plain :class:`LaplaceMixer`.

- On the CPU, through Triton's interpreter, in one subprocess (``TRITON_INTERPRET`` must
  be set before Triton compiles anything): odd sizes, partial pooling windows, maps
  smaller than one window, both layouts, three dtypes, the whole mixer and model.
- Without the interpreter: argument checks, the fallback (one log line), structure.
- On a CUDA device: the real kernels at model sizes.

Tolerances: float32 kernels 1e-5 (the same float32 arithmetic in another order); float16
/ bfloat16 inputs: the reference takes the same rounded inputs in float32 and the kernel
rounds once, when it stores, so one ulp of the output's magnitude (2**-10 resp. 2**-7
relative) on top: half an ulp on the GPU, a whole one in the interpreter, which
truncates to bfloat16.
"""
import copy
import logging
import sys
from typing import Dict

import pytest
import torch
import torch.nn.functional as F

from conftest import randomise_bn, run_interpreted

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
ULP = {torch.float32: 0.0, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def reference(t: torch.Tensor, low: int, k: int, weight: torch.Tensor, bias: torch.Tensor,
              scan) -> Dict[str, torch.Tensor]:
    """What the plain mixer computes between ``conv2d`` and ``out_proj``, in float32:
    ``pooled``, the scan's output ``y`` (``scan(pooled)``) and the merged ``out``."""
    a = F.silu(t.float())
    lo, hi = a[:, :low], a[:, low:]
    hi = F.conv2d(hi, weight.float(), bias.float(), padding=weight.shape[-1] // 2,
                  groups=hi.shape[1])
    pooled = F.avg_pool2d(lo, k, ceil_mode=True) if k > 1 else lo
    y = scan(pooled)
    if k > 1:
        def up(z, mode):
            return F.interpolate(z, scale_factor=k, mode=mode)[..., :t.shape[2], :t.shape[3]]
        lo = up(y, 'bilinear') + lo - up(pooled, 'nearest')
    else:
        lo = y
    return dict(pooled=pooled, y=y, out=torch.cat([lo, hi], 1))


def fake_scan(z: torch.Tensor) -> torch.Tensor:
    """Stands in for the scan + LayerNorm: float32, any values, elementwise."""
    return torch.tanh(z.float()) * 2.0 + 0.1


def kernel_errors(batch: int, channels: int, height: int, width: int, low: int, k: int,
                  dtype: torch.dtype = torch.float32, channels_last: bool = True,
                  device: str = 'cpu', ks: int = 3) -> Dict[str, float]:
    """Relative errors (``||a - b|| / ||b||``) of both kernels against :func:`reference`;
    checks output dtypes, shapes and layouts."""
    from tinyvim_mm.ops import mixer_merge, silu_avg_pool
    gen = torch.Generator().manual_seed(batch * 1000 + channels * 10 + k)
    t = (2 * torch.randn(batch, channels, height, width, generator=gen)).to(device, dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels - low, 1, ks, ks, generator=gen).to(device)
    bias = torch.randn(channels - low, generator=gen).to(device)
    ref = reference(t, low, k, weight, bias, fake_scan)
    pooled = silu_avg_pool(t[:, :low], k)
    assert pooled.dtype == dtype and pooled.is_contiguous(memory_format=torch.channels_last)
    out = mixer_merge(t, pooled, fake_scan(pooled), weight, bias, k)
    assert out.dtype == dtype and out.shape == t.shape and out.stride() == t.stride()

    def rel(a, b):
        return ((a.double() - b.double()).norm() / b.double().norm()).item()
    # the merge from the reference's own pooled map, to test it alone
    alone = mixer_merge(t, ref['pooled'].to(dtype), ref['y'], weight, bias, k)
    return dict(pooled=rel(pooled, ref['pooled']), out=rel(out, ref['out']),
                merge=rel(alone, ref['out']))


# ----------------------------------------------------------------- CPU, interpreter
CASES = [  # batch, channels, H, W, low, k, dtype, channels_last, ks
    (2, 12, 13, 10, 3, 4, torch.float32, True, 3),  # partial windows, 3 of 12 scanned
    (1, 10, 7, 9, 5, 2, torch.float32, False, 3),  # NCHW
    (2, 9, 5, 5, 4, 8, torch.float32, True, 3),  # the map smaller than one window
    (1, 6, 6, 5, 2, 1, torch.float32, True, 3),  # no pooling
    (1, 8, 9, 9, 4, 3, torch.float32, False, 5),  # factor 3 (1/3 not exact), 5x5 conv
    (1, 70, 6, 5, 6, 2, torch.float32, True, 3),  # 64 high channels + 0: 2 channel blocks
    (2, 12, 11, 9, 6, 4, torch.float16, True, 3),
    (1, 12, 11, 9, 6, 2, torch.bfloat16, False, 3),
]


def interpreter_results() -> Dict[str, Dict[str, float]]:
    """Everything the CPU tests check, computed under ``TRITON_INTERPRET=1`` (run by the
    ``interpreted`` fixture in a subprocess)."""
    from tinyvim_mm.deploy import optimize_for_inference
    from tinyvim_mm.models import TinyViM
    from tinyvim_mm.models.layers import FusedLaplaceMixer, LaplaceMixer
    out = {}
    for case in CASES:
        b, c, h, w, low, k, dtype, cl, ks = case
        out[f'kernels {case}'] = kernel_errors(b, c, h, w, low, k, dtype, cl, ks=ks)

    # the custom ops' fake (meta) forms against the kernels: shapes, strides, dtypes
    t = torch.randn(2, 10, 7, 9).contiguous(memory_format=torch.channels_last)
    pooled = torch.ops.tinyvim.silu_avg_pool(t[:, :4], 2)
    checks = [torch.library.opcheck(torch.ops.tinyvim.silu_avg_pool, (t[:, :4], 2)),
              torch.library.opcheck(torch.ops.tinyvim.mixer_merge,
                                    (t, pooled, pooled.float(), torch.randn(6, 1, 3, 3),
                                     torch.randn(6), 2))]
    out['opcheck'] = dict(failures=sum(v != 'SUCCESS' for r in checks for v in r.values()))

    calls = []
    module = sys.modules['tinyvim_mm.models.layers.laplace_mixer']
    merge = module.mixer_merge
    module.mixer_merge = lambda *a: calls.append(1) or merge(*a)
    try:
        with torch.no_grad():
            for k in (2, 1):
                mixer = randomise_bn(LaplaceMixer(32, 0.5, k, scan_backend='torch')).eval()
                x = torch.randn(2, 32, 13, 10).contiguous(memory_format=torch.channels_last)
                expected = mixer(x)
                fused = copy.deepcopy(mixer).to_fused().eval()
                out[f'mixer k={k}'] = dict(err=(fused(x) - expected).abs().max().item())
                compiled = torch.compile(fused, backend='aot_eager', fullgraph=True)
                out[f'compiled mixer k={k}'] = dict(err=(compiled(x) - expected).abs().max().item())
            model = randomise_bn(TinyViM('s', scan_backend='torch')).eval()
            x = torch.randn(2, 3, 64, 64)
            expected = model(x)
            nchw = optimize_for_inference(copy.deepcopy(model), fuse_blocks=False,
                                          scan_backend='torch', channels_last=False)
            calls.clear()
            nchw(x)  # NCHW activations: the plain ops
            nchw_calls = len(calls)
            fast = optimize_for_inference(copy.deepcopy(model), fuse_blocks=False,
                                          scan_backend='torch')
            got = fast(x)  # NCHW input, the backbone channels-last: the kernels
            out['model'] = dict(
                err=max((a - b).abs().max().item() for a, b in zip(got, expected)),
                fused=sum(isinstance(m, FusedLaplaceMixer) for m in fast.modules()),
                calls=len(calls) - nchw_calls, nchw_calls=nchw_calls,
                nchw_out=all(o.is_contiguous() for o in got))
    finally:
        module.mixer_merge = merge
    return out


@pytest.fixture(scope='module')
def interpreted() -> Dict[str, Dict[str, float]]:
    """:func:`interpreter_results` from a subprocess with ``TRITON_INTERPRET=1``."""
    return run_interpreted('test_fused_mixer')


@pytest.mark.parametrize('case', CASES, ids=lambda c: 'x'.join(map(str, c[:6])) + str(c[6])[6:])
def test_interpreted_kernels(interpreted, case):
    errors = interpreted[f'kernels {case}']
    tol = 1e-5 + ULP[case[6]]
    assert max(errors.values()) < tol, errors


def test_interpreted_opcheck(interpreted):
    assert interpreted['opcheck']['failures'] == 0


def test_interpreted_mixer_and_model(interpreted):
    """The fused mixer equals the plain one (also compiled, in one graph); in the model
    every mixer is fused and its merge kernel runs on the channels-last activations of the
    inference form's backbone, NCHW input included (NCHW activations, with
    ``channels_last=False``, take the plain ops); the maps come back NCHW."""
    for key in ('mixer k=2', 'mixer k=1', 'compiled mixer k=2', 'compiled mixer k=1'):
        assert interpreted[key]['err'] < 1e-5, key
    model = interpreted['model']
    assert model['err'] < 1e-4
    assert model['fused'] == model['calls'] == 5  # TinyViM-S: 1 + 1 + 2 + 1 mixers
    assert model['nchw_calls'] == 0 and model['nchw_out']


# ----------------------------------------------------------------- CPU, no kernels
def test_argument_checks():
    from tinyvim_mm.ops import mixer_merge, silu_avg_pool
    t = torch.randn(1, 8, 6, 6)
    pooled = torch.randn(1, 4, 3, 3)
    w, b = torch.randn(4, 1, 3, 3), torch.randn(4)
    with pytest.raises(ValueError, match=r'must be \(B, C, H, W\)'):
        silu_avg_pool(t[0], 2)
    with pytest.raises(ValueError, match='pooling factor must be >= 1, got 0'):
        silu_avg_pool(t, 0)
    with pytest.raises(ValueError, match=r'pooled and y must be \(1, 4, 2, 2\)'):
        mixer_merge(t, pooled, pooled, w, b, 4)
    with pytest.raises(ValueError, match=r'odd square \(4, 1, s, s\)'):
        mixer_merge(t, pooled, pooled, torch.randn(4, 1, 2, 2), b, 2)
    with pytest.raises(ValueError, match=r'with a \(4,\) bias'):
        mixer_merge(t, pooled, pooled, w, torch.randn(3), 2)


def test_fused_mixer_falls_back_on_cpu(monkeypatch, caplog):
    """Without the kernels: the plain ops, one log line; with gradients: silently, and
    differentiable."""
    from tinyvim_mm.models.layers import LaplaceMixer
    support = sys.modules['tinyvim_mm.ops.device']
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setattr(support, '_LOGGED', set())
    mixer = randomise_bn(LaplaceMixer(16, 0.5, 2, scan_backend='torch')).eval()
    x = torch.randn(2, 16, 7, 6)
    with torch.no_grad():
        expected = mixer(x)
    fused = copy.deepcopy(mixer).to_fused()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger='tinyvim_mm'):
        got = fused(x)
        fused(x)
    assert (got - expected).abs().max().item() < 1e-5
    assert [r.getMessage() for r in caplog.records] == [
        'tinyvim_mm: fused mixer kernels unavailable (tensors on cpu, not on a CUDA device); '
        'using the plain ops']
    caplog.clear()
    xg = x.clone().requires_grad_()
    fused(xg).sum().backward()
    assert xg.grad is not None and not caplog.records


def test_fused_mixer_is_plain_under_torch_compile(monkeypatch, caplog):
    """Traced by ``torch.compile`` the fused mixer runs the plain ops (inductor fuses them
    better than it can around the kernels), silently, where the kernels would be taken
    eagerly."""
    from tinyvim_mm.models.layers import LaplaceMixer
    from tinyvim_mm.models.layers import laplace_mixer

    def kernel(*args, **kwargs):
        raise AssertionError('the fused kernel ran')

    monkeypatch.setattr(laplace_mixer, 'fused_mixer_unsupported', lambda t: '')
    monkeypatch.setattr(laplace_mixer, 'silu_avg_pool', kernel)
    mixer = randomise_bn(LaplaceMixer(16, 0.5, 2, scan_backend='torch')).eval()
    x = torch.randn(2, 16, 8, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = mixer(x)
        fused = copy.deepcopy(mixer).to_fused()
        with pytest.raises(AssertionError, match='the fused kernel ran'):
            fused(x)
        torch._dynamo.reset()
        with caplog.at_level(logging.WARNING, logger='tinyvim_mm'):
            got = torch.compile(fused, backend='eager', fullgraph=True)(x)
    torch._dynamo.reset()
    assert (got - expected).abs().max().item() < 1e-5 and not caplog.records


def test_fused_mixer_structure():
    """``to_fused`` folds first; a fused mixer needs a folded one; a second
    ``optimize_for_inference`` does not wrap twice; ``fuse_mixers=False`` keeps them."""
    from tinyvim_mm.deploy import optimize_for_inference
    from tinyvim_mm.models import TinyViM
    from tinyvim_mm.models.layers import FusedLaplaceMixer, LaplaceMixer
    mixer = LaplaceMixer(16, 0.5, 2)
    with pytest.raises(RuntimeError, match='needs a folded LaplaceMixer'):
        FusedLaplaceMixer(mixer)
    fused = mixer.to_fused()
    assert fused.mixer is mixer and mixer.local_conv.deploy and mixer.in_proj.deploy
    model = TinyViM('s')
    optimize_for_inference(model)
    optimize_for_inference(model)
    mixers = [m for m in model.modules() if isinstance(m, (LaplaceMixer, FusedLaplaceMixer))]
    assert [type(m) for m in mixers] == [FusedLaplaceMixer, LaplaceMixer] * 5
    plain = optimize_for_inference(TinyViM('s'), fuse_mixers=False)
    assert not any(isinstance(m, FusedLaplaceMixer) for m in plain.modules())


# ----------------------------------------------------------------- on a GPU
@needs_gpu
@pytest.mark.parametrize('shape', [(64, 48, 56, 56, 12, 8), (2, 96, 200, 334, 48, 4),
                                   (8, 224, 7, 7, 168, 1), (3, 168, 14, 15, 84, 2)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_kernels_on_gpu(shape, dtype):
    from tinyvim_mm.ops import fused_mixer_unsupported
    reason = fused_mixer_unsupported(torch.empty(1, 1, 1, 1, device='cuda', dtype=dtype))
    if reason:
        pytest.skip(reason)
    for channels_last in (True, False):
        errors = kernel_errors(*shape, dtype=dtype, channels_last=channels_last, device='cuda')
        assert max(errors.values()) < 1e-5 + ULP[dtype], (channels_last, errors)


@needs_gpu
def test_fused_mixers_in_the_inference_form_on_gpu(no_tf32, monkeypatch):
    """TinyViM-S's inference form with and without fused mixers, float32 and under
    fp16 autocast, channels-last."""
    from tinyvim_mm.deploy import optimize_for_inference
    from tinyvim_mm.models import TinyViM
    from tinyvim_mm.ops import fused_mixer_unsupported
    reason = fused_mixer_unsupported(torch.empty(1, 1, 1, 1, device='cuda'))
    if reason:
        pytest.skip(reason)
    model = randomise_bn(TinyViM('s')).cuda().eval()
    x = torch.randn(8, 3, 224, 224, device='cuda').contiguous(memory_format=torch.channels_last)
    cl = torch.channels_last
    plain = optimize_for_inference(copy.deepcopy(model), fuse_mixers=False).to(memory_format=cl)
    fused = optimize_for_inference(copy.deepcopy(model)).to(memory_format=cl)
    module = sys.modules['tinyvim_mm.models.layers.laplace_mixer']
    merge, calls = module.mixer_merge, []
    monkeypatch.setattr(module, 'mixer_merge', lambda *a: calls.append(1) or merge(*a))
    with torch.no_grad():
        expected = model(x)
        for dtype in (torch.float32, torch.float16):
            with torch.autocast('cuda', dtype, enabled=dtype != torch.float32):
                a, b = plain(x), fused(x)
            for ya, yb, ye in zip(a, b, expected):
                scale = ye.float().norm()
                assert ((yb.float() - ye).norm() / scale).item() < (1e-4 if dtype == torch.float32
                                                                    else 1e-2)
                assert ((yb.float() - ya.float()).norm() / scale).item() < (
                    1e-5 if dtype == torch.float32 else 1e-2)
    assert len(calls) == 2 * 5  # both dtypes, every mixer of TinyViM-S
