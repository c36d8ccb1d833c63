"""Selective-scan backends: the chunked torch scan (and the CUDA kernel, where
present) against the per-step reference loop, dtypes, dispatch and errors."""
import importlib
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from tinyvim_mm.ops import (available_backends, resolve_backend, selective_scan,
                            selective_scan_flops, selective_scan_ref, selective_scan_torch)

cuda_module = importlib.import_module('tinyvim_mm.ops.scan.cuda')
chunked = importlib.import_module('tinyvim_mm.ops.scan.chunked')

HAS_CUDA_EXT = cuda_module.extension_available()
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
needs_cuda_backend = pytest.mark.skipif(
    not (torch.cuda.is_available() and HAS_CUDA_EXT),
    reason='needs a CUDA device and the selective_scan_cuda extension (mamba-ssm)')

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')


def make_inputs(b=2, K=4, d=3, N=8, L=49, with_D=True, with_bias=True, softplus=True,
                dt_shift=0.0, dtype=torch.float32, device='cpu'):
    """Realistic inputs: S4D-real ``A`` with noise, ``delta ~ 0.5 randn``
    (positive when it is used as ``dt`` directly); ``dt_shift`` adds to it."""
    u = torch.randn(b, K * d, L)
    delta = 0.5 * torch.randn(b, K * d, L) + dt_shift
    if not softplus:
        delta = F.softplus(delta)
    A = -torch.exp(torch.log(torch.arange(1, N + 1.0)) + 0.1 * torch.randn(K * d, N))
    B = torch.randn(b, K, N, L)
    C = torch.randn(b, K, N, L)
    D = torch.randn(K * d) if with_D else None
    bias = 0.5 * torch.randn(K * d) if with_bias else None
    tensors = [u.to(dtype), delta.to(dtype), A, B.to(dtype), C.to(dtype), D, bias]
    return [None if t is None else t.to(device).requires_grad_() for t in tensors]


def run(fn, inputs, softplus=True, **kwargs):
    """Output and gradients (w.r.t. every input given) for a fixed random output gradient."""
    y = fn(*inputs, delta_softplus=softplus, **kwargs)
    grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
    present = [t for t in inputs if t is not None]
    grads = iter(torch.autograd.grad(y, present, grad_out))
    return y, [None if t is None else next(grads) for t in inputs]


def assert_close(actual, expected, atol, what=''):
    assert actual.dtype == expected.dtype, what
    assert torch.isfinite(actual).all(), f'{what}: not finite'
    err = (actual.float() - expected.float()).abs().max().item()
    assert err <= atol, f'{what}: max abs diff {err:.3g} > {atol:.3g}'


def scaled(atol, expected):
    """``atol`` for values up to 1, relative above (fp32 rounding grows with magnitude)."""
    return atol * max(1.0, expected.abs().max().item())


def assert_backends_agree(fn, ref_fn, inputs, softplus=True, atol=1e-5, relative_output=False,
                          **kwargs):
    """Outputs within ``atol`` (max abs) and gradients within ``scaled(atol)``:
    gradients of A, D and delta_bias are sums over batch and length."""
    y, grads = run(fn, inputs, softplus, **kwargs)
    y_ref, grads_ref = run(ref_fn, inputs, softplus)
    assert_close(y, y_ref, scaled(atol, y_ref) if relative_output else atol, 'output')
    for name, g, g_ref in zip(NAMES, grads, grads_ref):
        if g_ref is not None:
            assert_close(g, g_ref, scaled(atol, g_ref), f'grad {name}')


@pytest.mark.parametrize('L', [1, 7, 49, 130])
@pytest.mark.parametrize('with_D, with_bias, softplus', [(True, True, True),
                                                         (False, False, True),
                                                         (True, False, False)])
def test_torch_matches_ref(L, with_D, with_bias, softplus):
    inputs = make_inputs(L=L, with_D=with_D, with_bias=with_bias, softplus=softplus)
    assert_backends_agree(selective_scan_torch, selective_scan_ref, inputs, softplus)


@pytest.mark.parametrize('chunk_size', [1, 5, 16, 64, 200])
def test_torch_any_chunk_size(chunk_size):
    """Many chunks, a partial last chunk, and one chunk longer than L."""
    inputs = make_inputs(L=130)
    assert_backends_agree(selective_scan_torch, selective_scan_ref, inputs,
                          chunk_size=chunk_size)


@pytest.mark.parametrize('K, N', [(1, 16), (2, 1)])
def test_torch_other_directions_and_states(K, N):
    inputs = make_inputs(b=1, K=K, d=5, N=N, L=70)
    assert_backends_agree(selective_scan_torch, selective_scan_ref, inputs)


def test_torch_large_dt_underflow():
    """dt ~ 20 and A down to -16: exp(dt * A) underflows to 0 and the outputs
    reach hundreds (hence a relative check); nothing may turn nan/inf."""
    inputs = make_inputs(N=16, L=100, dt_shift=20.0)
    dt = F.softplus(inputs[1] + inputs[6][:, None])
    assert (torch.exp(dt[..., None] * inputs[2][:, None]) == 0).any()
    assert_backends_agree(selective_scan_torch, selective_scan_ref, inputs, relative_output=True)


def test_torch_non_contiguous_inputs():
    u, delta, A, B, C, D, bias = make_inputs(L=40)
    B_t = B.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    u_t = u.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    assert not (B_t.is_contiguous() or u_t.is_contiguous())
    assert_backends_agree(selective_scan_torch, selective_scan_ref,
                          [u_t, delta, A, B_t, C, D, bias])


@pytest.mark.parametrize('dtype, atol', [(torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
def test_torch_half_precision(dtype, atol):
    """Half inputs: output in that dtype, equal to the fp32 scan of the same (rounded)
    values up to the output's rounding; gradients in the inputs' dtypes."""
    inputs = make_inputs(L=49, dtype=dtype)
    y, grads = run(selective_scan_torch, inputs)
    as_fp32 = [t.detach().float().requires_grad_() for t in inputs]
    y32, grads32 = run(selective_scan_torch, as_fp32)
    assert y.dtype == dtype
    assert_close(y.float(), y32, scaled(atol, y32), 'output')
    for name, t, g, g32 in zip(NAMES, inputs, grads, grads32):
        assert g.dtype == t.dtype, name
        assert_close(g.float(), g32, scaled(atol, g32), f'grad {name}')


def test_softplus_in_place_accuracy():
    x = torch.linspace(-80, 80, 100001)
    expected = F.softplus(x.double())
    got = chunked._softplus_(x.clone()).double()
    assert ((got - expected).abs() / expected).max() < 1e-6
    special = chunked._softplus_(torch.tensor([float('inf'), -float('inf'), 0.0]))
    assert special.tolist() == [float('inf'), 0.0, pytest.approx(math.log(2))]


def test_dispatch_on_cpu():
    inputs = make_inputs(L=20)
    with torch.no_grad():
        y_ref = selective_scan_ref(*inputs)
        for backend in ('auto', 'torch', 'ref'):
            assert_close(selective_scan(*inputs, backend=backend), y_ref, 1e-5, backend)
    assert resolve_backend('auto', 'cpu') == 'torch'
    assert resolve_backend('torch', torch.device('cpu')) == 'torch'
    assert available_backends()[-2:] == ['torch', 'ref']


def test_resolve_backend_with_and_without_extension(monkeypatch):
    """'auto' on a CUDA device: 'triton' where Triton runs there, else 'cuda' with
    mamba-ssm's extension, else 'torch'."""
    triton_runs = torch.cuda.is_available() and 'triton' in available_backends()
    monkeypatch.setattr(cuda_module, '_ext', object())
    assert resolve_backend('auto', 'cuda:0') == ('triton' if triton_runs else 'cuda')
    assert resolve_backend('auto', 'cpu') == 'torch'
    with pytest.raises(ValueError, match='CUDA device'):
        resolve_backend('cuda', 'cpu')
    monkeypatch.setattr(cuda_module, '_ext', None)
    assert resolve_backend('auto', 'cuda:0') == ('triton' if triton_runs else 'torch')
    assert 'cuda' not in available_backends()
    with pytest.raises(ImportError, match='mamba-ssm'):
        resolve_backend('cuda', 'cuda:0')


def test_unknown_backend():
    with pytest.raises(ValueError, match="'auto', 'cuda', 'torch', 'ref', 'triton'"):
        selective_scan(*make_inputs(L=4), backend='bogus')


@pytest.mark.skipif(HAS_CUDA_EXT, reason='selective_scan_cuda is importable here')
def test_cuda_backend_missing():
    with pytest.raises(ImportError, match='selective_scan_cuda.*mamba-ssm'):
        selective_scan(*make_inputs(L=4), backend='cuda')


@pytest.mark.parametrize('change, match', [
    (lambda t: t.update(u=t['u'][0]), 'u must be'),
    (lambda t: t.update(delta=t['delta'][..., :-1]), 'delta must'),
    (lambda t: t.update(A=t['A'][:-1]), 'A must'),
    (lambda t: t.update(B=t['B'][:, :, :-1]), 'B must'),
    (lambda t: t.update(B=t['B'][..., :-1]), 'B must'),
    (lambda t: t.update(C=t['C'][:1]), 'C must'),
    (lambda t: t.update(B=t['B'][:, :3], C=t['C'][:, :3]), 'directions'),
    (lambda t: t.update(D=t['D'][:-1]), 'D must'),
    (lambda t: t.update(delta_bias=t['delta_bias'][None]), 'delta_bias must'),
    (lambda t: t.update(u=t['u'].long()), 'floating-point'),
])
@pytest.mark.parametrize('backend', ['torch', 'ref'])
def test_bad_inputs(change, match, backend):
    tensors = dict(zip(NAMES, (t.detach() for t in make_inputs(d=2, L=6))))  # 8 channels
    change(tensors)
    with pytest.raises(ValueError, match=match):
        selective_scan(**tensors, backend=backend)


def test_bad_chunk_size():
    with pytest.raises(ValueError, match='chunk_size'):
        selective_scan_torch(*make_inputs(L=6), chunk_size=0)


def test_flops():
    assert selective_scan_flops(2, 49, 384, 8) == 9 * 2 * 49 * 384 * 8 + 2 * 384 * 49
    assert selective_scan_flops(1, 10, 4, 16, with_D=False) == 9 * 10 * 4 * 16


@needs_gpu
@pytest.mark.parametrize('L', [49, 300])
def test_torch_on_gpu_matches_ref(L):
    inputs = make_inputs(L=L, device='cuda')
    assert_backends_agree(selective_scan_torch, selective_scan_ref, inputs)
    assert resolve_backend('auto', 'cuda') == 'triton'  # any GPU these tests run on


@needs_cuda_backend
@pytest.mark.parametrize('dtype, atol', [(torch.float32, 1e-4), (torch.float16, 2e-2),
                                         (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize('L, with_D, with_bias', [(49, True, True), (300, False, False)])
def test_cuda_matches_torch(dtype, atol, L, with_D, with_bias):
    inputs = make_inputs(L=L, with_D=with_D, with_bias=with_bias, dtype=dtype, device='cuda')
    y, grads = run(lambda *a, **k: selective_scan(*a, backend='cuda', **k), inputs)
    y_torch, grads_torch = run(selective_scan_torch, inputs)
    assert y.dtype == dtype
    assert_close(y, y_torch, scaled(atol, y_torch), 'output')
    for name, t, g, g_torch in zip(NAMES, inputs, grads, grads_torch):
        if t is not None:
            assert g.dtype == t.dtype, name
            assert_close(g, g_torch, scaled(atol, g_torch), f'grad {name}')


@needs_cuda_backend
def test_cuda_backend_rejects_cpu_tensors():
    with pytest.raises(ValueError, match='CUDA device'):
        selective_scan(*make_inputs(L=4), backend='cuda')


@pytest.mark.parametrize('L, with_D, with_bias, softplus', [(1, True, True, True),
                                                          (49, True, True, True),
                                                          (30, False, False, True),
                                                          (17, True, False, False)])
def test_dense_export_form_matches_ref(L, with_D, with_bias, softplus):
    """The loop-free form used while exporting to ONNX, gradients included."""
    inputs = make_inputs(L=L, with_D=with_D, with_bias=with_bias, softplus=softplus)
    # A different summation order over L: delta_bias's gradient (a sum over batch and
    # length) differs from the loop's by ~1.5e-5 relative on some BLAS/torch builds.
    assert_backends_agree(chunked.selective_scan_export, selective_scan_ref, inputs, softplus,
                          atol=5e-5, relative_output=True)


def test_dense_form_used_in_onnx_export(monkeypatch):
    inputs = [t.detach() for t in make_inputs(L=9)]
    calls = []
    dense = chunked.selective_scan_export
    monkeypatch.setattr(chunked, 'selective_scan_export', lambda *a: calls.append(1) or dense(*a))
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert_close(selective_scan_torch(*inputs), selective_scan_ref(*inputs), 1e-5)
    assert calls


def test_scan_exported_with_a_dynamic_length(tmp_path):
    """A module calling the ``torch`` backend exports with a dynamic ``L`` (the sizes read
    at run time, :mod:`tinyvim_mm.ops.onnx_shapes`); onnxruntime matches the reference scan
    at lengths other than the traced one, chunk-padded or not."""
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    u0, delta0, A, B0, C0, D, bias = [t.detach() for t in make_inputs(L=20)]

    class Scan(torch.nn.Module):
        def forward(self, u, delta, B, C):
            return selective_scan_torch(u, delta, A, B, C, D, bias, delta_softplus=True)

    path = str(tmp_path / 'scan.onnx')
    axes = {0: 'b', 2: 'L'}
    torch.onnx.export(Scan(), (u0, delta0, B0, C0), path, dynamo=False, opset_version=17,
                      input_names=['u', 'delta', 'B', 'C'],
                      dynamic_axes={'u': axes, 'delta': axes, 'B': {0: 'b', 3: 'L'},
                                    'C': {0: 'b', 3: 'L'}})
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for length in (7, 17, 49):
        u, delta, _, B, C, _, _ = [t.detach() for t in make_inputs(b=1, L=length)]
        got = session.run(None, dict(u=u.numpy(), delta=delta.numpy(), B=B.numpy(),
                                     C=C.numpy()))[0]
        expected = selective_scan_ref(u, delta, A, B, C, D, bias, delta_softplus=True)
        assert_close(torch.from_numpy(got), expected, 1e-5)


def test_triton_falls_back_with_one_log(monkeypatch, caplog):
    """No usable GPU: 'triton' runs what 'auto' picks and says so once."""
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setattr(cuda_module, '_ext', None)
    support = importlib.import_module('tinyvim_mm.ops.device')
    monkeypatch.setattr(support, '_LOGGED', set())
    inputs = make_inputs(L=12)
    with caplog.at_level(logging.WARNING, logger='tinyvim_mm'):
        assert resolve_backend('triton', 'cpu') == 'torch'
        y, grads = run(lambda *a, **k: selective_scan(*a, backend='triton', **k), inputs)
        assert resolve_backend('triton', 'cpu') == 'torch'
    y_ref, grads_ref = run(selective_scan_torch, inputs)
    assert torch.equal(y, y_ref) and all(torch.equal(g, r) for g, r in zip(grads, grads_ref))
    messages = [r.getMessage() for r in caplog.records if 'Triton selective scan' in r.getMessage()]
    assert len(messages) == 1 and "using 'torch'" in messages[0]


class _CpuExtension:
    """Stand-in for ``selective_scan_cuda`` on the CPU: the reference forward
    and the torch backend's gradients, in the extension's calling convention."""

    @staticmethod
    def fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
        x = u.new_zeros(u.shape[0], u.shape[1], math.ceil(u.shape[2] / 2048), 2 * A.shape[1])
        return selective_scan_ref(u, delta, A, B, C, D, delta_bias, softplus), x

    @staticmethod
    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, softplus, recompute):
        leaves = [None if t is None else t.detach().requires_grad_()
                  for t in (u, delta, A, B, C, D, delta_bias)]
        with torch.enable_grad():
            y = selective_scan_torch(*leaves, delta_softplus=softplus)
            grads = iter(torch.autograd.grad(y, [t for t in leaves if t is not None], dout))
        return [None if t is None else next(grads) for t in leaves] + [None, None]


@pytest.mark.parametrize('with_D', [True, False])
def test_cuda_custom_op_autograd_and_compile(monkeypatch, with_D):
    """The extension's custom ops: gradients through ``register_autograd`` and
    one graph under ``torch.compile`` (no break at the scan)."""
    monkeypatch.setattr(cuda_module, '_ext', _CpuExtension)
    inputs = make_inputs(L=10, with_D=with_D, with_bias=with_D)

    def scan(*args, **kwargs):
        return cuda_module.SelectiveScanCuda.apply(*args, kwargs.get('delta_softplus', True))

    assert_backends_agree(scan, selective_scan_ref, inputs, atol=1e-4)
    compiled = torch.compile(scan, backend='aot_eager', fullgraph=True)
    assert_backends_agree(compiled, selective_scan_ref, inputs, atol=1e-4)


@needs_cuda_backend
def test_cuda_custom_op_fake_matches_extension():
    """The ops' fake (meta) outputs have the extension's shapes and strides."""
    u, delta, A, B, C, D, bias = (t.detach() for t in make_inputs(L=49, device='cuda'))
    out, x = torch.ops.tinyvim.selective_scan_cuda_fwd(u, delta, A, B, C, D, bias, True)
    torch.library.opcheck(torch.ops.tinyvim.selective_scan_cuda_fwd,
                          (u, delta, A, B, C, D, bias, True),
                          test_utils=('test_schema', 'test_faketensor'))
    grads = torch.ops.tinyvim.selective_scan_cuda_bwd(u, delta, A, B, C, D, bias,
                                                      torch.randn_like(out), x, True)
    torch.library.opcheck(torch.ops.tinyvim.selective_scan_cuda_bwd,
                          (u, delta, A, B, C, D, bias, torch.randn_like(out), x, True),
                          test_utils=('test_schema', 'test_faketensor'))
    assert [g.shape for g in grads] == [t.shape for t in (u, delta, A, B, C, D, bias)]


@needs_gpu
@pytest.mark.parametrize('dtype, atol', [(torch.float32, 1e-5), (torch.float16, 2e-2),
                                         (torch.bfloat16, 6e-2)])
def test_triton_matches_torch_on_gpu(dtype, atol):
    if 'triton' not in available_backends():
        pytest.skip('Triton cannot run on this GPU')
    inputs = [None if t is None else t.detach()
              for t in make_inputs(L=49, d=20, dtype=dtype, device='cuda')]
    with torch.no_grad():
        y = selective_scan(*inputs, backend='triton')
        y_torch = selective_scan_torch(*inputs)
    assert y.dtype == dtype
    assert_close(y, y_torch, scaled(atol, y_torch), 'output')
