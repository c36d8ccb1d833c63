"""Inference form of a TinyViM model: the reparameterized (deploy) model with
its blocks swapped for fused equivalents.

:func:`optimize_for_inference` folds the model (``switch_to_deploy``), then
optionally

- runs each Local block (``x + FFN(RepDW(x))``) and each TinyViM block's FFN
  (``x + FFN(x)``) as one Triton kernel (:func:`~.fused_ffn.fused_ffn`),
- merges the mixer's 7x1 / 1x7 depth-wise pair into one depth-wise 7x7 conv,
- selects the ``'triton'`` scan backend (fused 2-D scan + LayerNorm),
- stores conv / linear weights in half precision (SSM parameters and norms
  stay float32).

Every fused module computes what it replaces (up to float rounding) and falls
back to plain convolutions where its kernel cannot run (CPU, GPUs before
Ampere, autograd), with a one-line log.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fused_ffn import fused_ffn_transposed, fused_ffn_unsupported
from .support import log_once


class FusedFFN(nn.Module):
    """``x + fc2(GELU(fc1(dw(x))))``, ``dw`` optional, as one kernel at inference.

    Args:
        fc1, fc2: the folded 1x1 convs (with bias).
        dw: the folded depth-wise conv applied first, or ``None``.
    """

    def __init__(self, fc1: nn.Conv2d, fc2: nn.Conv2d, dw: Optional[nn.Conv2d] = None) -> None:
        super().__init__()
        self.dw = dw
        self.fc1 = fc1
        self.fc2 = fc2
        # the kernel's weight layout, prepared once (inference weights are fixed)
        self.register_buffer('w1t', fc1.weight.detach().flatten(1).t().contiguous(),
                             persistent=False)
        self.register_buffer('w2t', fc2.weight.detach().flatten(1).t().contiguous(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or torch.is_grad_enabled()):
            reason = fused_ffn_unsupported(x)
            if not reason:
                dw = self.dw
                return fused_ffn_transposed(x, self.w1t, self.fc1.bias, self.w2t,
                                            self.fc2.bias, None if dw is None else dw.weight,
                                            None if dw is None else dw.bias)
            log_once(f'tinyvim_mm: fused FFN kernel unavailable ({reason}); using convolutions')
        y = x if self.dw is None else self.dw(x)
        return x + self.fc2(F.gelu(self.fc1(y)))


class FusedTinyViMBlock(nn.Module):
    """A TinyViM block whose FFN and residual run as :class:`FusedFFN`:
    ``y = x + mixer(x); y + FFN(y)``."""

    def __init__(self, op: nn.Module, ffn: FusedFFN) -> None:
        super().__init__()
        self.op = op
        self.ffn = ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(x + self.op(x))


def _dense_axial(axial: nn.Module) -> nn.Conv2d:
    """One depth-wise ``k x k`` conv equal to a folded ``AxialRepDW`` (its
    ``k x 1`` and ``1 x k`` kernels placed on the centre column / row)."""
    conv_w, conv_h = axial.dwconv_w.reparam, axial.dwconv_h.reparam
    k = conv_w.kernel_size[0]
    channels = conv_w.out_channels + conv_h.out_channels
    conv = nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels).to(conv_w.weight)
    with torch.no_grad():
        weight = conv_w.weight.new_zeros(channels, 1, k, k)
        weight[:conv_w.out_channels, :, :, k // 2] = conv_w.weight[..., 0]
        weight[conv_w.out_channels:, :, k // 2, :] = conv_h.weight[:, :, 0]
        conv.weight.copy_(weight)
        conv.bias.copy_(torch.cat([conv_w.bias, conv_h.bias]))
    return conv


def optimize_for_inference(model: nn.Module,
                           fuse_blocks: bool = True,
                           max_fused_channels: int = 128,
                           fold_axial: bool = False,
                           scan_backend: Optional[str] = 'triton',
                           half: Optional[torch.dtype] = None) -> nn.Module:
    """Turn ``model`` (a TinyViM backbone or any model holding one) into its
    inference form, in place; it is left in eval mode.

    Args:
        model: the model; folded first if it is not yet.
        fuse_blocks: fuse the FFN blocks of stages at most
            ``max_fused_channels`` wide (the wide, low-resolution stages keep
            cuBLAS/cuDNN convolutions, which reuse weights better there).
        max_fused_channels: see ``fuse_blocks`` (at most 256).
        fold_axial: merge the mixers' 7x1 / 1x7 pair into one 7x7 depth-wise conv.
        scan_backend: selective-scan backend for every mixer (``None``: keep).
        half: ``torch.float16`` / ``torch.bfloat16`` to store the conv and
            linear weights in; run under autocast of that dtype.

    Returns:
        ``model``.
    """
    from tinyvim_mm.models.backbones.tinyvim import LocalBlock, TinyViMBlock
    from tinyvim_mm.models.layers import AxialRepDW, LaplaceMixer, SelectiveScan
    from tinyvim_mm.models.layers.reparam import switch_to_deploy

    switch_to_deploy(model)
    model.eval()
    if fold_axial:
        for mixer in [m for m in model.modules() if isinstance(m, LaplaceMixer)]:
            if isinstance(mixer.conv2d, AxialRepDW):
                mixer.conv2d = _dense_axial(mixer.conv2d)
    if fuse_blocks:
        for parent in list(model.modules()):
            for name, block in list(parent.named_children()):
                if isinstance(block, LocalBlock):
                    fused = FusedFFN(block.mlp.fc1.reparam, block.mlp.fc2.reparam,
                                     block.dwconv.reparam)
                elif isinstance(block, TinyViMBlock):
                    fused = FusedTinyViMBlock(
                        block.op, FusedFFN(block.mlp.fc1.reparam, block.mlp.fc2.reparam))
                else:
                    continue
                if block.mlp.fc2.reparam.out_channels <= max_fused_channels:
                    setattr(parent, name, fused)
    if scan_backend is not None:
        for scan in model.modules():
            if isinstance(scan, SelectiveScan):
                scan.backend = scan_backend
    if half is not None:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, FusedFFN)):
                module.to(half)
    return model.eval()  # the new modules too
