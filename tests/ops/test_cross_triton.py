"""The trainable Triton 2-D cross scan (:mod:`tinyvim_mm.ops.scan.cross_triton`).

References: the model's ``cross_scan -> selective_scan_ref -> cross_merge`` in float64
with autograd (a), and the torch backend (``selective_scan_torch``) in float32 (b).
Errors are ``||out - ref|| / ||ref||`` per output and per gradient.

- On the CPU, through Triton's interpreter, in one subprocess (``TRITON_INTERPRET``
  must be set before Triton compiles anything, and the GPU tests below must not see
  it): small shapes, since the interpreter calls the scan's combine function once per
  element.
- On a CUDA device: model-sized shapes in float32, float16 and bfloat16, outputs
  poisoned beforehand, and the op inside ``torch.compile(fullgraph=True)``.

The op takes ``delta``, ``B``, ``C`` packed in one per-pixel projection ``proj``
(``split_projection``) and returns its gradient whole; the references take the same
views of a float64 ``proj``.

Tolerances: float32 forward 1e-5 and gradients 1e-4. With float16 / bfloat16 ``x`` and
``proj`` the references take the same rounded inputs in float64: the kernels compute in
float32 and ``y`` is float32, so the forward keeps 1e-5; the gradients of those two
come back rounded to their dtype (round to nearest: at most half an ulp, 2**-11 resp.
2**-8 of each element), so they get that much on top of 1e-4; ``A``, ``D``,
``delta_bias`` are float32 and keep 1e-4.
"""
from typing import Dict, List, Optional

import pytest
import torch

from conftest import run_interpreted

NAMES = ('x', 'proj', 'A', 'D', 'delta_bias')
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64 (``||a - b||`` where ``b`` is zero); NaN stays NaN."""
    diff = (a.double() - b.double()).norm()
    scale = b.double().norm()
    return (diff / scale if scale > 0 else diff).item()


def grad_tol(dtype: torch.dtype) -> float:
    """Gradient tolerance for ``x`` and ``proj`` of ``dtype`` (module docstring)."""
    return 1e-4 + {torch.float32: 0.0, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}[dtype]


def make_inputs(b: int, d: int, height: int, width: int, n_state: int = 8,
                dtype: torch.dtype = torch.float32, layout: str = 'model',
                device: str = 'cpu', seed: int = 0) -> List[torch.Tensor]:
    """``x, proj, A, D, delta_bias`` for :func:`cross_selective_scan_train`.
    ``layout='model'``: ``x`` channels-last and ``proj`` a contiguous
    ``(b, H, W, 4(d + 2N))`` tensor, as the mixer makes them; ``'channels-first'``:
    ``x`` contiguous and ``proj`` a permuted view of a ``(b, 4(d + 2N), H, W)`` tensor."""
    gen = torch.Generator().manual_seed(seed)
    k = 4

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    A = -torch.exp(torch.log(torch.arange(1, n_state + 1.0)) + 0.1 * randn(k * d, n_state))
    D, bias = randn(k * d), 0.5 * randn(k * d)
    width_proj = k * (d + 2 * n_state)
    if layout == 'model':
        x = randn(b, height, width, d).permute(0, 3, 1, 2)
        proj = randn(b, height, width, width_proj)
    else:
        x = randn(b, d, height, width)
        proj = randn(b, width_proj, height, width).permute(0, 2, 3, 1)
    proj[..., :k * d] *= 0.5
    return [x.to(device, dtype), proj.to(device, dtype), *(t.to(device) for t in (A, D, bias))]


def reference(inputs: List[torch.Tensor], softplus: bool = True, backend: str = 'ref',
              grad_y: Optional[torch.Tensor] = None):
    """The model's cross scan on ``inputs`` (float64 for ``'ref'``, float32 for
    ``'torch'``): ``y`` and, with ``grad_y``, the gradients of all 5 inputs."""
    from tinyvim_mm.models.layers import cross_merge, cross_scan
    from tinyvim_mm.ops import selective_scan_ref, selective_scan_torch, split_projection
    dtype = torch.float64 if backend == 'ref' else torch.float32
    leaves = [t.detach().to(dtype).requires_grad_(grad_y is not None) for t in inputs]
    x, proj, A, D, bias = leaves
    b, d, height, width = x.shape
    length = height * width
    delta, Bm, Cm = split_projection(proj, d, A.shape[1])

    def seq(t: torch.Tensor) -> torch.Tensor:  # (b, 4, c, H, W) -> (b, 4, c, L), scan order
        return torch.stack([cross_scan(t[:, k])[:, k] for k in range(4)], 1)

    scan = selective_scan_ref if backend == 'ref' else selective_scan_torch
    ys = scan(cross_scan(x).reshape(b, 4 * d, length), seq(delta).reshape(b, 4 * d, length), A,
              seq(Bm), seq(Cm), D, bias, delta_softplus=softplus)
    y = cross_merge(ys.view(b, 4, d, length), height, width)
    if grad_y is None:
        return y, None
    return y, torch.autograd.grad(y, leaves, grad_y.to(dtype))


def errors(inputs: List[torch.Tensor], softplus: bool = True, chunk: Optional[int] = None,
           backends=('ref', 'torch')) -> Dict[str, float]:
    """Errors of the op's ``y`` and gradients against each reference backend; keys
    ``'<backend> <name>'``. Also checks dtypes, shapes and contiguity of the outputs."""
    from tinyvim_mm.ops.scan.cross_triton import cross_selective_scan_train
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = cross_selective_scan_train(*leaves, delta_softplus=softplus, chunk_size=chunk)
    assert y.dtype == torch.float32 and y.is_contiguous() and y.shape == inputs[0].shape
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.device)
    grads = torch.autograd.grad(y, leaves, grad_y)
    for name, g, t in zip(NAMES, grads, inputs):
        assert g.dtype == t.dtype and g.shape == t.shape and g.is_contiguous(), name
    out = {}
    for backend in backends:
        y_ref, grads_ref = reference(inputs, softplus, backend, grad_y)
        out[f'{backend} y'] = rel(y, y_ref)
        out.update({f'{backend} {n}': rel(g, r) for n, g, r in zip(NAMES, grads, grads_ref)})
    return out


# ----------------------------------------------------------------- CPU, interpreter
def interpreter_results() -> Dict[str, Dict[str, float]]:
    """Everything the CPU tests check, computed under ``TRITON_INTERPRET=1`` (run by the
    ``interpreted`` fixture in a subprocess)."""
    from tinyvim_mm.ops.scan import cross_triton
    torch.manual_seed(0)
    out = {}
    # several chunks with a ragged last one (15 = 4 + 4 + 4 + 3), d = 5 in one block of 8,
    # the model's non-contiguous layout
    out['fp32 model layout, 4 chunks'] = errors(make_inputs(2, 5, 3, 5), chunk=4)
    # tiny tiles: 2 channel blocks of 2 for d = 3 (the dB / dC sums over blocks), and the
    # carry kernel's loop over 8 chunks 4 at a time; contiguous inputs
    sizes = cross_triton.FWD_TILE, cross_triton.BWD_TILE, cross_triton.CARRY_CHUNKS
    cross_triton.FWD_TILE = cross_triton.BWD_TILE = 32
    cross_triton.CARRY_CHUNKS = 4
    try:
        out['fp32 2 channel blocks'] = errors(make_inputs(1, 3, 3, 5, layout='channels-first'),
                                              chunk=2)
        out['deterministic'] = _deterministic_errors(make_inputs(1, 3, 3, 5), chunk=2)
    finally:
        cross_triton.FWD_TILE, cross_triton.BWD_TILE, cross_triton.CARRY_CHUNKS = sizes
    for (height, width), chunk in (((1, 1), None), ((3, 5), None), ((7, 7), None),
                                   ((5, 11), 16), ((11, 5), 8)):
        out[f'size {height}x{width} chunk {chunk}'] = errors(
            make_inputs(1, 3, height, width, n_state=4), chunk=chunk, backends=('ref', ))
    out['no softplus'] = errors(make_inputs(1, 3, 2, 3, n_state=3), softplus=False, chunk=2)
    for dtype in (torch.float16, torch.bfloat16):
        out[f'{dtype}'] = errors(make_inputs(2, 3, 3, 4, n_state=4, dtype=dtype), chunk=4,
                                 backends=('ref', ))
    out['opcheck'] = {'failures': _opcheck()}
    out['compile'] = _compiled_errors()
    return out


def _outputs(inputs: List[torch.Tensor], chunk: Optional[int] = None) -> List[torch.Tensor]:
    """The op's ``y`` and the gradients of all 5 inputs for a fixed ``dy``."""
    from tinyvim_mm.ops.scan.cross_triton import cross_selective_scan_train
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = cross_selective_scan_train(*leaves, chunk_size=chunk)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.device)
    return [y.detach(), *torch.autograd.grad(y, leaves, grad_y)]


def _deterministic_errors(inputs: List[torch.Tensor], chunk: int) -> Dict[str, float]:
    """With deterministic algorithms on (outputs by direction and channel block, summed
    after), ``y`` and the gradients against the default (atomic) form's."""
    default = _outputs(inputs, chunk)
    torch.use_deterministic_algorithms(True)
    try:
        deterministic = _outputs(inputs, chunk)
    finally:
        torch.use_deterministic_algorithms(False)
    return {name: rel(a, b) for name, a, b in zip(('y', ) + NAMES, deterministic, default)}


def _opcheck() -> int:
    """Failed ``torch.library.opcheck`` tests of both ops on a 3-chunk problem."""
    from tinyvim_mm.ops.scan import cross_triton  # noqa: F401  (registers the ops)
    inputs = make_inputs(1, 2, 2, 3, n_state=2)
    leaves = [t.detach().requires_grad_() for t in inputs]
    ops = torch.ops.tinyvim
    y, states = ops.cross_scan_train_fwd(*inputs, True, 2)
    results = [
        torch.library.opcheck(ops.cross_scan_train_fwd, (*leaves, True, 2)),
        torch.library.opcheck(ops.cross_scan_train_bwd,
                              (*inputs, states, torch.randn_like(y), True, 2)),
    ]
    return sum(v != 'SUCCESS' for r in results for v in r.values())


def _compiled_errors() -> Dict[str, float]:
    """The op inside ``torch.compile(fullgraph=True, dynamic=True)`` (aot_eager: no C++
    compiler needed; symbolic sizes reach the chunk heuristic) against eager mode, output
    and gradients, at two map sizes through one compiled function."""
    from tinyvim_mm.ops.scan.cross_triton import cross_selective_scan_train

    def fn(*args: torch.Tensor) -> torch.Tensor:
        return (cross_selective_scan_train(*args) * 2.0).sum()

    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend='aot_eager')
    out = {}
    for height, width in ((2, 3), (3, 4)):
        inputs = make_inputs(1, 2, height, width, n_state=2)
        results = []
        for f in (fn, compiled):
            leaves = [t.detach().requires_grad_() for t in inputs]
            loss = f(*leaves)
            results.append([loss] + list(torch.autograd.grad(loss, leaves)))
        out.update({f'{height}x{width} {name}': rel(c, e)
                    for name, e, c in zip(('loss', ) + NAMES, *results)})
    return out


@pytest.fixture(scope='module')
def interpreted() -> Dict[str, Dict[str, float]]:
    """:func:`interpreter_results` from a subprocess with ``TRITON_INTERPRET=1``."""
    return run_interpreted('test_cross_triton')


def _check(errs: Dict[str, float], dtype: torch.dtype = torch.float32) -> None:
    for key, err in errs.items():
        name = key.split()[1]
        tol = grad_tol(dtype) if name in ('x', 'proj') else 1e-4
        if name == 'y':
            tol = 1e-5
        assert err <= tol, (key, err, tol)  # NaN fails too


def test_interpreted_fp32(interpreted):
    """Forward and all 5 gradients against both references, several chunks, the model's
    strided ``x``, a ``proj`` whose channels are not contiguous, and several channel
    blocks."""
    for case in ('fp32 model layout, 4 chunks', 'fp32 2 channel blocks'):
        assert len(interpreted[case]) == 12, case
        _check(interpreted[case])


def test_interpreted_sizes(interpreted):
    """1x1, 3x5, 7x7 (one chunk each, by default), 5x11 and 11x5 (H != W, several chunks,
    a ragged last one), and ``delta_softplus=False``."""
    cases = [k for k in interpreted if k.startswith('size')] + ['no softplus']
    assert len(cases) == 6
    for case in cases:
        _check(interpreted[case])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_interpreted_half(interpreted, dtype):
    _check(interpreted[str(dtype)], dtype)


def test_interpreted_deterministic(interpreted):
    """Deterministic mode (per-direction ``y`` / ``dx``, per-channel-block ``dB`` / ``dC``,
    2 blocks here) computes what the atomic form does, up to the order of float32 sums."""
    errs = interpreted['deterministic']
    assert len(errs) == 6 and max(errs.values()) <= 1e-6, errs


def test_interpreted_opcheck_and_compile(interpreted):
    assert interpreted['opcheck']['failures'] == 0
    assert max(interpreted['compile'].values()) <= 1e-6, interpreted['compile']


def test_default_chunk_size():
    from tinyvim_mm.ops.scan.cross_triton import default_chunk_size
    assert [default_chunk_size(n) for n in (1, 2, 15, 49, 64)] == [1, 2, 16, 64, 64]  # one chunk
    assert default_chunk_size(65) == default_chunk_size(4200) == 16


def test_rejects_bad_shapes():
    from tinyvim_mm.ops.scan.cross_triton import cross_selective_scan_train
    x, proj, A, D, bias = make_inputs(1, 2, 2, 3, n_state=2)
    with pytest.raises(ValueError, match=r'proj must have shape \(1, 2, 3, 24\)'):
        cross_selective_scan_train(x, proj[..., :-1], A, D, bias)
    with pytest.raises(ValueError, match='A must be'):
        cross_selective_scan_train(x, proj, A.flatten(), D, bias)
    with pytest.raises(ValueError, match='power of 2'):
        cross_selective_scan_train(x, proj, A, D, bias, chunk_size=3)


def test_split_projection_layout():
    """``delta``, ``B``, ``C`` of each direction are consecutive blocks of the last dim."""
    from tinyvim_mm.ops import split_projection
    proj = torch.arange(2 * 3 * 5 * 4 * 7, dtype=torch.float32).view(2, 3, 5, 28)  # d=3, N=2
    delta, Bm, Cm = split_projection(proj, 3, 2)
    assert delta.shape == (2, 4, 3, 3, 5) and Bm.shape == Cm.shape == (2, 4, 2, 3, 5)
    assert torch.equal(delta[1, 2, 0, 1, 4], proj[1, 1, 4, 2 * 3 + 0])
    assert torch.equal(Bm[0, 3, 1, 2, 0], proj[0, 2, 0, 12 + 3 * 2 + 1])
    assert torch.equal(Cm[0, 1, 0, 0, 3], proj[0, 0, 3, 20 + 1 * 2 + 0])


def test_benchmark_refuses_cpu(monkeypatch):
    from tinyvim_mm.ops.scan import cross_triton_bench
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(RuntimeError, match='needs a CUDA device'):
        cross_triton_bench.benchmark([(1, 2, 2, 3)], [torch.float32], 1)


# ----------------------------------------------------------------- on a GPU
def _poison_allocator() -> None:
    """Fill the caching allocator's free memory with NaN, so that an output element no
    kernel writes cannot pass for a correct value left by an earlier run."""
    free = torch.cuda.mem_get_info()[0]
    block = torch.full((min(free // 8, 2**30) // 4, ), float('nan'), device='cuda')
    del block


@needs_gpu
@pytest.mark.parametrize('shape', [(2, 96, 25, 42), (64, 12, 7, 7), (64, 96, 7, 7),
                                   (64, 168, 7, 7), (3, 20, 1, 1), (2, 24, 33, 65)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_cross_scan_on_gpu(no_tf32, shape, dtype):
    """Detection (25x42, 1050 steps in many chunks) and classification (7x7, one chunk)
    sizes, a 1x1 map and a large odd one, in the model's strided layout, against the
    float64 reference and (float32) the torch backend."""
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip('bfloat16 needs compute capability 8.0')
    torch.manual_seed(0)
    inputs = make_inputs(*shape, dtype=dtype, device='cuda')
    _poison_allocator()
    errs = errors(inputs, backends=('ref', 'torch') if dtype == torch.float32 else ('ref', ))
    _check(errs, dtype)


@needs_gpu
def test_chunkings_agree_on_gpu():
    """Every chunk size (1 step to all 1050 in 16 + 1 chunks) computes the same function."""
    from tinyvim_mm.ops.scan.cross_triton import cross_selective_scan_train
    inputs = make_inputs(2, 40, 25, 42, device='cuda')
    ys = [cross_selective_scan_train(*inputs, chunk_size=c) for c in (1, 4, 16, 64, 128)]
    y_ref, _ = reference(inputs)
    for chunk, y in zip((1, 4, 16, 64, 128), ys):
        assert rel(y, y_ref) <= 1e-5, chunk


@needs_gpu
def test_deterministic_mode_repeats_bit_for_bit_on_gpu(no_tf32):
    """Under ``torch.use_deterministic_algorithms(True)`` (MMEngine's
    ``randomness.deterministic``) repeated calls give the same output and gradients bit for
    bit (6 channel blocks at d = 96, 66 chunks), and match the default atomic form to 1e-6."""
    inputs = make_inputs(2, 96, 25, 42, device='cuda')
    default = _outputs(inputs)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [_outputs(inputs) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    for name, *outs in zip(('y', ) + NAMES, default, *runs):
        assert all(torch.equal(outs[1], o) for o in outs[2:]), name
        assert rel(outs[1], outs[0]) <= 1e-6, name


@needs_gpu
def test_compiled_on_gpu(no_tf32):
    """Inside ``torch.compile(fullgraph=True)`` (inductor), output and gradients as in
    eager mode."""
    from tinyvim_mm.ops.scan.cross_triton import cross_selective_scan_train

    def fn(*args: torch.Tensor) -> torch.Tensor:
        return cross_selective_scan_train(*args).square().mean()

    inputs = make_inputs(4, 48, 25, 42, device='cuda')
    results = []
    for f in (fn, torch.compile(fn, fullgraph=True)):
        leaves = [t.detach().requires_grad_() for t in inputs]
        loss = f(*leaves)
        results.append([loss] + list(torch.autograd.grad(loss, leaves)))
    for name, eager, compiled in zip(('loss', ) + NAMES, *results):
        assert rel(compiled, eager) <= 1e-5, name
