"""Whole-model check of the scan backends on CUDA: TinyViM-B forward + backward
with each backend (fp32 and fp16 autocast), outputs and gradients compared
with the ``torch`` backend.

Example (on a GPU machine):
    python tools/experiments/gpu_backend_check.py --arch b --shape 2 3 512 512
"""
import argparse
import time

import torch

from tinyvim_mm.models import TinyViM
from tinyvim_mm.models.layers import SelectiveScan
from tinyvim_mm.ops import available_backends


def run(model: TinyViM, backend: str, x: torch.Tensor, amp: bool):
    for m in model.modules():
        if isinstance(m, SelectiveScan):
            m.backend = backend
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast('cuda', torch.float16, enabled=amp):
        outs = model(x)
        loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    torch.cuda.synchronize()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return [o.detach().float() for o in outs], grads, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='b')
    parser.add_argument('--shape', type=int, nargs=4, default=[2, 3, 512, 512])
    args = parser.parse_args()
    print('backends available:', available_backends())
    # exact float32 convolutions / matmuls: only the scans differ between the runs
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = TinyViM(args.arch).cuda().train()
    model.init_weights()
    x = torch.randn(*args.shape, device='cuda')
    for amp in (False, True):
        results = {}
        for backend in ('torch', 'cuda'):
            run(model, backend, x, amp)  # warm-up
            results[backend] = run(model, backend, x, amp)
        (ref_out, ref_grad, ref_t), (out, grad, t) = results['torch'], results['cuda']
        out_err = max(((a - b).abs().max() / a.abs().max()).item() for a, b in zip(ref_out, out))
        grad_err = ((grad - ref_grad).norm() / ref_grad.norm()).item()
        print(f'TinyViM-{args.arch.upper()} {"fp16 autocast" if amp else "fp32"} {tuple(x.shape)}: '
              f'fwd+bwd torch {ref_t * 1e3:.1f} ms, cuda {t * 1e3:.1f} ms; '
              f'out rel diff {out_err:.2e}, grad rel diff {grad_err:.2e}, '
              f'finite: {bool(torch.isfinite(grad).all())}')


if __name__ == '__main__':
    main()
