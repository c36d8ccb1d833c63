"""The Laplace mixer with the fused Triton cross scan (``scan_backend='triton'``, what
``'auto'`` picks on GPUs) against the portable per-direction path, in training: output and
every parameter's gradient. On CPU through Triton's interpreter, in a subprocess (the
interpreter is chosen when Triton first compiles)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = r'''
import json, copy, torch
from tinyvim_mm.models.layers import LaplaceMixer
torch.manual_seed(0)
out = {}
for shape, pool in [((2, 16, 12, 20), 2), ((1, 16, 5, 7), 1)]:
    ref = LaplaceMixer(16, 0.5, pool, scan_backend='torch').train()
    tri = copy.deepcopy(ref)
    tri.scan.backend = 'triton'
    x = torch.randn(*shape)
    ys, grads = [], []
    for model in (ref, tri):
        xi = x.clone().requires_grad_()
        y = model(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        ys.append(y.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()} | {'x': xi.grad})
    # biases right before a training-mode BatchNorm have a zero true gradient: their
    # relative error is rounding noise, so each error is relative to the larger of the
    # gradient's own norm and 1e-3 of the largest one
    scale = 1e-3 * max(float(g.norm()) for g in grads[0].values())
    rel = lambda a, b: float((a - b).norm()) / max(float(b.norm()), scale, 1e-12)
    out[str(shape)] = dict(y=rel(ys[1], ys[0]),
                           grads={n: rel(grads[1][n], g) for n, g in grads[0].items()})
print(json.dumps(out))
'''


def test_triton_mixer_matches_the_portable_path():
    pytest.importorskip('triton')
    env = dict(os.environ, TRITON_INTERPRET='1',
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for shape, res in results.items():
        assert res['y'] < 1e-5, (shape, res['y'])
        bad = {n: e for n, e in res['grads'].items() if e > 1e-4}
        assert not bad, (shape, bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('dtype, tol', [(torch.float32, 5e-3), (torch.float16, 5e-2)])
def test_triton_mixer_on_gpu(dtype, tol, no_tf32):
    """Same on the GPU at a detection-sized map (the scan at 25x42), with autocast for
    half precision. The output agrees to 1e-5; the gradients of this randomly initialised
    mixer are ill-conditioned (its LayerNorm backward amplifies float32 rounding): the
    per-step 'ref' and the 'torch' backend, each within 5e-7 of a float64 scan at the op
    level, differ here by 1.2e-3 (x) and 1.6e-3 (A_logs) on the CPU, hence 5e-3; fp16
    projections (rounded in a different order: folded in the Triton path) 10x that. The
    op-level tests hold the 1e-4 bound. The loss is a sum, so that no fp16 gradient is
    subnormal."""
    import copy
    from tinyvim_mm.models.layers import LaplaceMixer
    ref = LaplaceMixer(96, 0.5, 2, scan_backend='torch').cuda().train()
    tri = copy.deepcopy(ref)
    tri.scan.backend = 'triton'
    x = torch.randn(2, 96, 50, 84, device='cuda')
    outs = []
    for model in (ref, tri):
        xi = x.clone().requires_grad_()
        with torch.autocast('cuda', dtype=dtype, enabled=dtype != torch.float32):
            y = model(xi)
        y.float().square().sum().backward()
        outs.append((y.float(), xi.grad, model.A_logs.grad, model.x_proj_weight.grad))
    y_tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, a, b, bound in zip(('y', 'x grad', 'A_logs grad', 'x_proj grad'), outs[1],
                                 outs[0], (y_tol, tol, tol, tol)):
        err = float((a - b).norm() / b.norm())
        assert err < bound, (name, err)
