"""The Laplace mixer with the fused Triton cross scan (``scan_backend='triton'``, what
``'auto'`` picks on GPUs) against the portable per-direction path, in training: output and
every parameter's gradient. On CPU through Triton's interpreter, in a subprocess (the
interpreter is chosen when Triton first compiles)."""
import json
import math
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
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_triton_mixer_on_gpu(dtype, no_tf32):
    """Same on the GPU at a detection-sized map (the scan at 25x42), with autocast for
    half precision. The loss is ``<y, w>`` for a fixed random ``w`` (a sum of squares
    would have no gradient through the mixer's LayerNorm, only rounding noise). Float32:
    the output and gradients agree with the 'torch' backend to 1e-5 and 1e-3. Under
    autocast the two paths round their projections differently (folded in the Triton
    path), so each is compared with the float32 result: the Triton path's error may be
    at most 1.5x the 'torch' backend's, plus 1e-3."""
    import copy
    from tinyvim_mm.models.layers import LaplaceMixer
    torch.manual_seed(0)
    ref = LaplaceMixer(96, 0.5, 2, scan_backend='torch').cuda().train()
    tri = copy.deepcopy(ref)
    tri.scan.backend = 'triton'
    x = torch.randn(2, 96, 50, 84, device='cuda')
    w = torch.randn(2, 96, 50, 84, device='cuda')

    def run(model, autocast):
        xi = x.clone().requires_grad_()
        model.zero_grad()
        with torch.autocast('cuda', dtype=dtype, enabled=autocast):
            y = model(xi)
        (y.float() * w).sum().backward()
        return dict(y=y.float(), x_grad=xi.grad, A_logs_grad=model.A_logs.grad.clone(),
                    x_proj_grad=model.x_proj_weight.grad.clone())

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    exact = run(ref, autocast=False)
    if dtype == torch.float32:
        for name, value in run(tri, autocast=False).items():
            assert rel(value, exact[name]) < (1e-5 if name == 'y' else 1e-3), name
        return
    half_ref, half_tri = run(ref, autocast=True), run(tri, autocast=True)
    for name, value in half_tri.items():
        err, err_ref = rel(value, exact[name]), rel(half_ref[name], exact[name])
        assert err < 1.5 * err_ref + 1e-3, (name, err, err_ref)


def test_folded_scan_weights_are_kept_for_inference_only():
    """In the deploy form, without gradients, the folded projection and ``A`` are computed
    once and reused (a batch-1 forward would otherwise spend five kernels per mixer on
    them), recomputed after an in-place change of a parameter (``load_state_dict``), one
    pair per dtype (a CUDA graph replays the addresses of its dtype's pair); with gradients, or in the training form (whose weights MMEngine's
    EMA swaps through ``.data``, leaving the version alone), on every call."""
    from tinyvim_mm.models.layers import LaplaceMixer, switch_to_deploy
    torch.manual_seed(0)
    mixer = LaplaceMixer(16, 0.5, 2).eval()
    x = torch.randn(1, 8, 3, 5)
    with torch.no_grad():
        A = mixer._scan_args(x)[1]
        mixer.A_logs.data.copy_(mixer.A_logs.data + 1)  # as the EMA swap does
        assert torch.allclose(mixer._scan_args(x)[1], A * math.e)
    switch_to_deploy(mixer)
    with torch.no_grad():
        proj, A, _, _ = mixer._scan_args(x)
        again = mixer._scan_args(x)
        assert again[1] is A  # reused
        assert torch.equal(again[0], proj)
        state = {k: v.clone() for k, v in mixer.state_dict().items()}
        state['x_proj_weight'] *= 2
        state['A_logs'] += 1
        mixer.load_state_dict(state)
        reloaded, A2, _, _ = mixer._scan_args(x)
        assert A2 is not A and torch.allclose(A2, -torch.exp(state['A_logs']))
        fresh = LaplaceMixer(16, 0.5, 2, deploy=True).eval()
        fresh.load_state_dict(state)
        assert torch.allclose(reloaded, fresh._scan_args(x)[0])
        assert not torch.allclose(reloaded, proj)
        assert mixer._scan_weights(torch.float64)[0].dtype == torch.float64
        # one pair per dtype: the float64 call kept the float32 pair
        assert mixer._scan_args(x)[1] is A2
    proj, A, _, _ = mixer._scan_args(x)
    (proj.sum() + A.sum()).backward()
    assert mixer.x_proj_weight.grad is not None and mixer.dt_projs_weight.grad is not None
    assert mixer.A_logs.grad is not None
