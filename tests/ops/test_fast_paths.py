"""Fast inference paths against the portable ones they replace.

- Triton kernels (scan, fused 2-D scan + LayerNorm, fused FFN block) on the CPU
  through Triton's interpreter (``TRITON_INTERPRET=1``, in one subprocess);
  skipped when Triton or its interpreter is unusable.
- Capability checks and fallbacks, with the device queries monkeypatched
  (pre-Ampere / pre-Volta GPUs, no Triton, CPU).
- ``optimize_for_inference`` on the CPU (fallback kernels): same outputs.
- On a CUDA device: the real kernels, the whole fast model and
  ``torch.compile`` of the training form with the CUDA scan custom op.
"""
import copy
import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import REPO
from conftest import randomise_bn as randomise
from tinyvim_mm.deploy import optimize_for_inference
from tinyvim_mm.models import TinyViM
from tinyvim_mm.models.backbones import FusedTinyViMBlock
from tinyvim_mm.models.layers import (AxialRepDW, FusedFFN, FusedLaplaceMixer, LaplaceMixer,
                                      SelectiveScan, switch_to_deploy)
from tinyvim_mm.ops import fused_ffn, resolve_backend
from tinyvim_mm.ops.device import DOT_MIN_CAPABILITY, triton_unsupported
from tinyvim_mm.ops.scan.triton_fwd import cross_scan_block

support = importlib.import_module('tinyvim_mm.ops.device')
cuda_module = importlib.import_module('tinyvim_mm.ops.scan.cuda')
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')




def max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        return max(max_diff(x, y) for x, y in zip(a, b))
    return (a.float() - b.float()).abs().max().item()


# ----------------------------------------------------------------- interpreter
INTERPRETER_SCRIPT = textwrap.dedent('''
    import copy, json, os, sys, traceback
    import torch, torch.nn.functional as F
    import triton, triton.language as tl

    @triton.jit
    def _probe(x_ptr):
        tl.store(x_ptr + tl.arange(0, 4), tl.arange(0, 4).to(tl.float32))
    try:
        _probe[(1, )](torch.zeros(4))
    except Exception as exc:
        print(json.dumps(dict(skip=f'Triton interpreter unusable: {exc}')))
        sys.exit(0)

    from tinyvim_mm.ops.ffn.kernels import _gelu

    @triton.jit
    def _gelu_of(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(y_ptr + i, _gelu(tl.load(x_ptr + i, mask=i < n)), mask=i < n)

    sys.path[:0] = os.environ['TINYVIM_TESTS'].split(os.pathsep)
    from test_fast_paths import max_diff, randomise
    from tinyvim_mm.deploy import optimize_for_inference
    from tinyvim_mm.models import TinyViM
    from tinyvim_mm.models.layers import LaplaceMixer, cross_merge, cross_scan
    from tinyvim_mm.ops import (cross_selective_scan, fused_ffn, selective_scan,
                                selective_scan_ref)
    torch.manual_seed(0)
    out = {}

    def scan_inputs(b=2, K=4, d=5, N=8, L=13):
        A = -torch.exp(torch.log(torch.arange(1, N + 1.)) + 0.1 * torch.randn(K * d, N))
        return [torch.randn(b, K * d, L), 0.5 * torch.randn(b, K * d, L), A,
                torch.randn(b, K, N, L), torch.randn(b, K, N, L), torch.randn(K * d),
                0.5 * torch.randn(K * d)]

    with torch.no_grad():
        for N, keep, softplus in ((8, True, True), (3, False, False)):
            u, delta, A, B, C, D, bias = scan_inputs(N=N)
            if not softplus:
                delta = F.softplus(delta)
            args = (u, delta, A, B, C, D if keep else None, bias if keep else None)
            ref = selective_scan_ref(*args, delta_softplus=softplus)
            out[f'scan N={N} D/bias={keep} softplus={softplus}'] = max_diff(
                selective_scan(*args, delta_softplus=softplus, backend='triton'),
                ref) / max(1.0, ref.abs().max().item())
        u, delta, A, B, C, D, bias = scan_inputs()
        half = [u.half(), delta.half(), A, B.half(), C.half(), D, bias]
        y = selective_scan(*half, backend='triton')
        out['scan fp16 dtype'] = str(y.dtype)
        out['scan fp16'] = max_diff(y, selective_scan_ref(*half))

        # the 2-D cross scan against cross_scan -> scan -> cross_merge -> LayerNorm
        b, d, H, W, N = 2, 6, 3, 5, 8
        x = torch.randn(b, d, H, W)
        delta, Bm, Cm = (0.5 * torch.randn(b, 4, d, H, W), torch.randn(b, 4, N, H, W),
                         torch.randn(b, 4, N, H, W))
        A = -torch.exp(torch.log(torch.arange(1, N + 1.)) + 0.1 * torch.randn(4 * d, N))
        D, bias, nw, nb = (torch.randn(4 * d), 0.5 * torch.randn(4 * d), torch.rand(d) + 0.5,
                           torch.randn(d))
        seq = lambda t: torch.stack([cross_scan(t[:, k])[:, k] for k in range(4)], 1)
        ys = selective_scan_ref(cross_scan(x).reshape(b, 4 * d, H * W),
                                seq(delta).reshape(b, 4 * d, H * W), A, seq(Bm), seq(Cm), D, bias)
        ref = cross_merge(ys.view(b, 4, d, H * W), H, W)
        ref = F.layer_norm(ref.permute(0, 2, 3, 1), (d, ), nw, nb).permute(0, 3, 1, 2)
        for block in (8, 4):  # all channels (LayerNorm fused) / split over programs
            for name, xx in (('nchw', x), ('nhwc', x.contiguous(memory_format=torch.channels_last))):
                y = cross_selective_scan(xx, delta, A, Bm, Cm, D, bias, nw, nb, block_d=block)
                out[f'cross block={block} {name}'] = max_diff(y, ref)

        for C, dw, dtype in ((48, True, torch.float32), (24, False, torch.float32),
                             (130, True, torch.float32), (48, True, torch.float16),
                             (96, False, torch.float16)):
            x = torch.randn(2, C, 7, 9).contiguous(memory_format=torch.channels_last)
            w1, b1 = torch.randn(4 * C, C, 1, 1) * 0.1, torch.randn(4 * C) * 0.1
            w2, b2 = torch.randn(C, 4 * C, 1, 1) * 0.1, torch.randn(C) * 0.1
            dw_w, dw_b = (torch.randn(C, 1, 3, 3) * 0.3, torch.randn(C) * 0.1) if dw else (None, None)
            a = F.conv2d(x, dw_w, dw_b, padding=1, groups=C) if dw else x
            ref = x + F.conv2d(F.gelu(F.conv2d(a, w1, b1)), w2, b2)
            y = fused_ffn(x.to(dtype), w1, b1, w2, b2, dw_w, dw_b)
            out[f'ffn C={C} dw={dw} {dtype}'] = max_diff(y, ref)
        x = torch.linspace(-10, 10, 200_001)
        y = torch.empty_like(x)
        _gelu_of[(triton.cdiv(x.numel(), 4096), )](x, y, x.numel(), BLOCK=4096)
        out['ffn kernel gelu'] = (y.double() - F.gelu(x.double())).abs().max().item()

        mixer = LaplaceMixer(32, 0.5, 2, scan_backend='torch').eval()
        x = torch.randn(3, 32, 13, 10)  # pooled 7x5, partial windows
        ref = mixer(x)
        mixer.scan.backend = 'triton'
        out['mixer'] = max_diff(mixer(x), ref)

        model = randomise(TinyViM('s', scan_backend='torch')).eval()
        x = torch.randn(2, 3, 64, 64)
        ref = model(x)
        fast = optimize_for_inference(copy.deepcopy(model), fuse_blocks=True,
                                      max_fused_channels=256, fold_axial=True)
        import tinyvim_mm.models.layers.ffn as inference
        kernel, calls = inference.fused_ffn_transposed, []
        inference.fused_ffn_transposed = lambda *a: calls.append(1) or kernel(*a)
        out['model'] = max_diff(fast(x.contiguous(memory_format=torch.channels_last)), ref)
        out['fused blocks run'] = len(calls)
        inference.fused_ffn_transposed = kernel
        block = fast.network[0][-1]
        xb = torch.randn(2, 48, 16, 16).contiguous(memory_format=torch.channels_last)
        compiled = torch.compile(block, backend='aot_eager', fullgraph=True)
        out['compiled block'] = max_diff(compiled(xb), block(xb))
    print(json.dumps(out))
''')


@pytest.fixture(scope='module')
def interpreted() -> dict:
    """The kernels' errors against their references, computed by Triton's
    CPU interpreter in a subprocess (the variable must be set before Triton
    compiles anything)."""
    pytest.importorskip('triton')
    if torch.cuda.is_available():
        pytest.skip('a GPU is here: the real kernels are tested (test_*_on_gpu)')
    env = dict(os.environ, TRITON_INTERPRET='1', TINYVIM_TESTS=os.pathsep.join([str(REPO / 'tests' / 'ops'), str(REPO / 'tests')]),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', INTERPRETER_SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if 'skip' in result:
        pytest.skip(result['skip'])
    return result


def test_interpreted_scan(interpreted):
    for key, err in interpreted.items():
        if key.startswith('scan') and key != 'scan fp16 dtype':
            assert err < (2e-3 if 'fp16' in key else 1e-5), (key, err)
    assert interpreted['scan fp16 dtype'] == 'torch.float16'


def test_interpreted_cross_scan(interpreted):
    errors = {k: v for k, v in interpreted.items() if k.startswith('cross')}
    assert len(errors) == 4 and max(errors.values()) < 1e-5, errors


def test_interpreted_fused_ffn(interpreted):
    for key, err in interpreted.items():
        if key.startswith('ffn C='):
            assert err < (2e-2 if 'float16' in key else 2e-5), (key, err)
    # the kernel's GELU (a fitted tail probability) against the exact one over +-10, in
    # float32: 2.9e-7 (numpy); any of the first three coefficients off by 1e-4 gives > 1e-5
    assert interpreted['ffn kernel gelu'] < 1e-6


def test_interpreted_mixer_and_model(interpreted):
    """The fused scan in the mixer, and the whole inference form (fused blocks
    up to 256 channels, 7x7 axial fold, Triton scan) within 1e-4 of the
    training form; one graph under torch.compile."""
    assert interpreted['mixer'] < 1e-5
    assert interpreted['model'] < 1e-4
    assert interpreted['fused blocks run'] == sum(TinyViM.arch_settings['s']['depths'])
    assert interpreted['compiled block'] < 1e-5


# ----------------------------------------------------------------- capability checks
@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend to have a CUDA device of a given compute capability, Triton
    installed, and no interpreter; returns the setter."""
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setattr(support, 'triton_import_error', lambda: '')
    monkeypatch.setattr(support, '_LOGGED', set())
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda *a: (major, minor))
    return set_capability


@pytest.mark.parametrize('capability, dtype, scan_ok, dot_ok', [
    ((9, 0), torch.float16, True, True), ((8, 0), torch.bfloat16, True, True),
    ((7, 0), torch.float16, True, False), ((7, 5), torch.bfloat16, False, False),
    ((6, 1), torch.float32, False, False)])
def test_capability_rules(fake_gpu, capability, dtype, scan_ok, dot_ok):
    fake_gpu(*capability)
    assert (triton_unsupported('cuda', 0, dtype) == '') == scan_ok
    assert (triton_unsupported('cuda', 0, dtype, DOT_MIN_CAPABILITY) == '') == dot_ok


def test_triton_scan_falls_back_on_old_gpu(fake_gpu, monkeypatch, caplog):
    fake_gpu(6, 1)
    with caplog.at_level(logging.WARNING, logger='tinyvim_mm'):
        monkeypatch.setattr(cuda_module, '_ext', object())
        assert resolve_backend('triton', 'cuda:0') == 'cuda'
        monkeypatch.setattr(cuda_module, '_ext', None)
        assert resolve_backend('triton', 'cuda:0', torch.float16) == 'torch'
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all('compute capability 6.1 < 7.0' in m for m in lines)
    fake_gpu(8, 0)
    assert resolve_backend('triton', 'cuda:0', torch.bfloat16) == 'triton'


def test_no_triton_falls_back(monkeypatch):
    monkeypatch.setattr(support, 'triton_import_error', lambda: 'triton is not importable')
    assert 'not importable' in triton_unsupported('cuda', 0, torch.float16)
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert 'not importable' in triton_unsupported('cpu', 0, torch.float32)


def test_cpu_only_under_interpreter(monkeypatch):
    monkeypatch.setattr(support, 'triton_import_error', lambda: '')
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    assert 'not on a CUDA device' in triton_unsupported('cpu', 0, torch.float32)
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert triton_unsupported('cpu', 0, torch.float32) == ''


def test_cross_scan_block_heuristic(monkeypatch):
    monkeypatch.setattr(support, 'multiprocessor_count', lambda *a: 132)
    monkeypatch.setattr(importlib.import_module('tinyvim_mm.ops.scan.triton_fwd'),
                        'multiprocessor_count', lambda *a: 132)
    cuda = torch.device('cuda', 0)
    assert cross_scan_block(1024, 168, 49, cuda) == 256  # LayerNorm fused
    assert cross_scan_block(64, 168, 49, cuda) == 32  # channels split over programs
    assert cross_scan_block(2, 96, 196, cuda) is None  # too little work: per-direction path
    assert cross_scan_block(1024, 96, 1050, cuda) is None  # long: per-direction path


# ----------------------------------------------------------------- inference form on CPU
def test_fused_ffn_falls_back_on_cpu(monkeypatch, caplog):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setattr(support, '_LOGGED', set())
    fc1, fc2, dw = nn.Conv2d(8, 32, 1), nn.Conv2d(32, 8, 1), nn.Conv2d(8, 8, 3, 1, 1, groups=8)
    block = FusedFFN(fc1, fc2, dw).eval()
    x = torch.randn(2, 8, 5, 6)
    given = x.clone()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger='tinyvim_mm'):
        y = block(x)
        with torch.inference_mode():
            z = block(x)
    assert torch.equal(x, given)  # in place only into its own buffers
    assert torch.allclose(y, x + fc2(F.gelu(fc1(dw(x)))), atol=1e-6)
    assert torch.equal(y, z)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert block(x).dtype == torch.float32  # as x + fc2(...) and the kernel give
    assert [r.getMessage() for r in caplog.records] == [
        'tinyvim_mm: fused FFN kernel unavailable (tensors on cpu, not on a CUDA device); '
        'using convolutions']


def test_fused_ffn_kernel_weights_follow_the_module(monkeypatch):
    """What the kernel is given: the module's current weights (a checkpoint loaded into a
    fused model after ``optimize_for_inference`` reaches the kernel), cast and transposed
    once per dtype, not per call; a call in one dtype keeps the other dtype's set (a CUDA
    graph captured in that dtype replays its addresses)."""
    ffn = sys.modules['tinyvim_mm.models.layers.ffn']
    given = []
    monkeypatch.setattr(ffn, 'fused_ffn_unsupported', lambda x: '')
    monkeypatch.setattr(ffn, 'fused_ffn_transposed', lambda x, *w: given.append(w) or x)
    fc1, fc2, dw = nn.Conv2d(8, 32, 1), nn.Conv2d(32, 8, 1), nn.Conv2d(8, 8, 3, 1, 1, groups=8)
    block = FusedFFN(fc1, fc2, dw).eval()
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        block(x)
        block(x.half())
        block(x)
        first, half, again = given
        assert all(a is b for a, b in zip(first, again))  # kept
        assert [t.dtype for t in half] == [torch.float16] * 6
        expected = (fc1.weight.flatten(1).t(), fc1.bias, fc2.weight.flatten(1).t(), fc2.bias,
                    dw.weight, dw.bias)
        assert all(torch.equal(a, b) and a.is_contiguous() for a, b in zip(first, expected))
        before = [t.clone() for t in first]
        block.load_state_dict({k: v * 2 for k, v in block.state_dict().items()})
        block(x)
        assert all(torch.equal(a, 2 * b) for a, b in zip(given[-1], before))


def test_optimize_for_inference_on_cpu(monkeypatch):
    """Structure of the inference form; on the CPU every fused module falls back
    and the model computes what the training form does."""
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    model = randomise(TinyViM('s', scan_backend='torch')).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fast = optimize_for_inference(copy.deepcopy(model), fold_axial=True)
        got = fast(x)
    assert max_diff(got, expected) < 1e-4
    kinds = [type(b) for stage in fast.stages for b in stage]
    assert kinds.count(FusedFFN) == 4 and kinds.count(FusedTinyViMBlock) == 2  # stages 1-2
    assert not any(isinstance(m, AxialRepDW) for m in fast.modules())
    assert {m.backend for m in fast.modules() if isinstance(m, SelectiveScan)} == {'triton'}
    half = optimize_for_inference(copy.deepcopy(model), fuse_blocks=False, half=torch.float16)
    mixer = next(m for m in half.modules() if isinstance(m, LaplaceMixer))
    assert mixer.in_proj.reparam.weight.dtype == torch.float16
    assert mixer.A_logs.dtype == mixer.out_norm.weight.dtype == torch.float32


@pytest.mark.parametrize('kwargs,match', [
    (dict(max_fused_channels=512), r'max_fused_channels must be an int in \[1, 256\]'),
    (dict(max_fused_channels=0), 'max_fused_channels'),
    (dict(max_fused_channels=True), 'max_fused_channels'),
    (dict(half='fp16'), 'half must be None, torch.float16 or torch.bfloat16'),
    (dict(half=torch.float32), 'half must be'),
    (dict(scan_backend='fast'), 'Unknown selective-scan backend'),
])
def test_optimize_for_inference_rejects_bad_arguments_first(kwargs, match):
    model = TinyViM('s')
    with pytest.raises(ValueError, match=match):
        optimize_for_inference(model, **kwargs)
    assert model.training and not model.deploy  # untouched


def test_dense_and_sequential_axial_folds_are_exact():
    axial = AxialRepDW(10)
    randomise(axial).eval()
    with pytest.raises(RuntimeError, match='needs the folded layer'):
        axial.to_sequential()
    x = torch.randn(2, 10, 9, 11)
    with torch.no_grad():
        from tinyvim_mm.models.layers import switch_to_deploy
        switch_to_deploy(axial)
        expected = axial(x)
        dense = axial.to_dense()
        assert dense.kernel_size == (7, 7) and dense.groups == 10
        assert max_diff(dense(x), expected) < 1e-6
        sequential = axial.to_sequential()
        assert [(c.kernel_size, c.groups) for c in sequential] == [((7, 1), 10), ((1, 7), 10)]
        assert max_diff(sequential(x), expected) < 1e-6


@pytest.mark.parametrize('pool_size', [1, 2])
def test_widened_local_conv_is_exact(pool_size):
    mixer = randomise(LaplaceMixer(16, 0.25, pool_size, scan_backend='torch')).eval()
    x = torch.randn(2, 16, 9, 7)
    with pytest.raises(RuntimeError, match='needs the folded mixer'):
        mixer.widen_local_conv()
    with torch.no_grad():
        switch_to_deploy(mixer)
        expected = mixer(x)
        mixer.widen_local_conv()
        mixer.widen_local_conv()  # once widened, it stays so
        assert mixer.local_conv.reparam.in_channels == 16
        assert max_diff(mixer(x), expected) < 1e-6
    with pytest.raises(RuntimeError, match='widened for export'):
        FusedLaplaceMixer(mixer)


def test_fused_modules_differentiable_in_training():
    """With gradients the fused modules run their convolutions (autograd works)."""
    block = FusedFFN(nn.Conv2d(4, 16, 1), nn.Conv2d(16, 4, 1)).train()
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    block(x).sum().backward()
    assert x.grad is not None and block.fc1.weight.grad is not None


# ----------------------------------------------------------------- on a GPU
def _skip_without(reason: str) -> None:
    if reason:
        pytest.skip(reason)


@needs_gpu
@pytest.mark.parametrize('batch, size', [(256, (7, 7)), (3, (25, 42))])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_fused_scan_on_gpu(no_tf32, batch, size, dtype):
    """The fused 2-D scan (LayerNorm in the kernel, or channels split over
    programs) against the per-direction path, at classification and at
    detection-like sizes."""
    _skip_without(triton_unsupported('cuda', torch.cuda.current_device(), dtype))
    mixer = LaplaceMixer(192, 0.5, 1, scan_backend='auto').cuda().eval()
    x = torch.randn(batch, 96, *size, device='cuda').contiguous(memory_format=torch.channels_last)
    atol = 1e-4 if dtype == torch.float32 else 3e-2
    with torch.no_grad(), torch.autocast('cuda', dtype, enabled=dtype != torch.float32):
        expected = mixer.ssm(x)
        for block in (128, 32):
            assert max_diff(mixer._ssm_fused(x, block), expected) < atol, block
        mixer.scan.backend = 'triton'
        assert max_diff(mixer.ssm(x), expected) < atol


@needs_gpu
@pytest.mark.parametrize('channels', [48, 96, 128, 224])
@pytest.mark.parametrize('dw', [True, False])
def test_fused_ffn_on_gpu(no_tf32, channels, dw):
    _skip_without(triton_unsupported('cuda', torch.cuda.current_device(), torch.float16,
                                     DOT_MIN_CAPABILITY))
    fc1 = nn.Conv2d(channels, 4 * channels, 1).cuda()
    fc2 = nn.Conv2d(4 * channels, channels, 1).cuda()
    conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels).cuda() if dw else None
    x = torch.randn(16, channels, 28, 20, device='cuda').contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        y = x if conv is None else conv(x)
        expected = x + fc2(F.gelu(fc1(y)))
        for dtype, atol in ((torch.float32, 1e-4), (torch.float16, 3e-2)):
            got = fused_ffn(x.to(dtype), fc1.weight, fc1.bias, fc2.weight, fc2.bias,
                            None if conv is None else conv.weight,
                            None if conv is None else conv.bias)
            assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
            assert max_diff(got, expected) < atol, dtype


@needs_gpu
def test_inference_form_on_gpu(no_tf32):
    """TinyViM-S with every fast path against the float32 training form."""
    _skip_without(triton_unsupported('cuda', torch.cuda.current_device(), torch.float16,
                                     DOT_MIN_CAPABILITY))
    model = randomise(TinyViM('s', out_indices=(3, ))).cuda().eval()
    x = torch.randn(256, 3, 224, 224, device='cuda')
    with torch.no_grad():
        expected = model(x)[0]
        fast = optimize_for_inference(copy.deepcopy(model), max_fused_channels=256,
                                      fold_axial=True)
        fast = fast.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        assert max_diff(fast(xc)[0], expected) < 1e-4 * max(1.0, expected.abs().max().item())
        with torch.autocast('cuda', torch.float16):
            half = fast(xc)[0].float()
    assert ((half - expected).norm() / expected.norm()).item() < 1e-2


@needs_gpu
def test_compiled_training_with_cuda_scan(no_tf32):
    """The training-form mixer under torch.compile in one graph (the CUDA scan
    is a custom op), gradients as in eager mode."""
    if not cuda_module.extension_available():
        pytest.skip('needs the selective_scan_cuda extension (mamba-ssm)')
    torch.manual_seed(0)
    mixer = LaplaceMixer(96, 0.5, 2, scan_backend='cuda').cuda().train()
    x = torch.randn(8, 96, 28, 28, device='cuda', requires_grad=True)
    grads = []
    for fn in (mixer, torch.compile(mixer, fullgraph=True)):
        x.grad = None
        mixer.zero_grad()
        out = fn(x)
        out.square().mean().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in mixer.parameters()])
    for eager, compiled in zip(*grads):
        assert max_diff(compiled, eager) <= 1e-4 * max(1.0, eager.abs().max().item())
