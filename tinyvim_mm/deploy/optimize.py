"""Inference form of a TinyViM model: the reparameterized (deploy) model with its
blocks swapped for their fused forms.

:func:`optimize_for_inference` folds the model (``switch_to_deploy``), then optionally

- runs each Local block (``x + FFN(RepDW(x))``) and each TinyViM block's FFN
  (``x + FFN(x)``) as one Triton kernel (``to_fused()``),
- runs each Laplace mixer's element-wise work (SiLU, pooling, upsampling, residual,
  the high-frequency depth-wise conv, concatenation) as two Triton kernels
  (``to_fused()``),
- merges the mixer's 7x1 / 1x7 depth-wise pair into one depth-wise 7x7 conv
  (``AxialRepDW.to_dense()``),
- selects a scan backend for every mixer (``'triton'``: fused 2-D scan + LayerNorm),
- stores conv / linear weights in half precision (SSM parameters and norms stay
  float32),
- stores the TinyViM backbones' conv weights in channels-last memory format, so that
  their activations are channels-last from the stem on (the fused kernels' layout, and
  the faster one for oneDNN's CPU convolutions); the backbone returns its maps in its
  input's layout, so necks and heads see what they saw before.

Every fused module computes what it replaces (up to float rounding) and falls back to
plain convolutions where its kernel cannot run (CPU, GPUs before Ampere, autograd),
with a one-line log.
"""
from typing import Optional

import torch
import torch.nn as nn

from tinyvim_mm.models.backbones.tinyvim import LocalBlock, TinyViM, TinyViMBlock
from tinyvim_mm.models.layers import (AxialRepDW, FusedLaplaceMixer, LaplaceMixer,
                                      SelectiveScan, switch_to_deploy)
from tinyvim_mm.ops import check_backend
from tinyvim_mm.ops.ffn import MAX_CHANNELS


def check_inference_options(scan_backend: Optional[str] = None, max_fused_channels: int = 128,
                            half: Optional[torch.dtype] = None) -> None:
    """Raise a ``ValueError`` naming the problem for an unknown scan backend,
    ``max_fused_channels`` outside ``[1, 256]`` or ``half`` not ``None`` /
    ``torch.float16`` / ``torch.bfloat16`` (:func:`optimize_for_inference`'s arguments)."""
    if scan_backend is not None:
        check_backend(scan_backend)
    if (isinstance(max_fused_channels, bool) or not isinstance(max_fused_channels, int)
            or not 1 <= max_fused_channels <= MAX_CHANNELS):
        raise ValueError(f'max_fused_channels must be an int in [1, {MAX_CHANNELS}] (the '
                         f'widest block the fused FFN kernel takes), got {max_fused_channels!r}')
    if half not in (None, torch.float16, torch.bfloat16):
        raise ValueError(f'half must be None, torch.float16 or torch.bfloat16, got {half!r}')


def optimize_for_inference(model: nn.Module,
                           fuse_blocks: bool = True,
                           max_fused_channels: int = 128,
                           fold_axial: bool = False,
                           scan_backend: Optional[str] = 'triton',
                           half: Optional[torch.dtype] = None,
                           fuse_mixers: bool = True,
                           channels_last: bool = True) -> nn.Module:
    """Turn ``model`` (a TinyViM backbone or any model holding one) into its inference
    form, in place; it is left in eval mode.

    Args:
        model: the model; folded first if it is not yet.
        fuse_blocks: fuse the FFN blocks of stages at most ``max_fused_channels`` wide
            (the wide, low-resolution stages keep cuBLAS/cuDNN convolutions, which reuse
            weights better there).
        max_fused_channels: see ``fuse_blocks`` (at most 256).
        fold_axial: merge the mixers' 7x1 / 1x7 pair into one 7x7 depth-wise conv.
        scan_backend: selective-scan backend for every mixer (``None``: keep).
        half: ``torch.float16`` / ``torch.bfloat16`` to store the conv and linear
            weights in; run under autocast of that dtype.
        fuse_mixers: every Laplace mixer as a :class:`FusedLaplaceMixer` (its kernels run
            eagerly; traced by ``torch.compile`` it runs the plain ops, faster there).
        channels_last: the weights of every :class:`TinyViM` in ``model`` (``model``
            itself included) in channels-last memory format; the rest of the model
            keeps its layout.

    Returns:
        ``model``.

    Raises:
        ValueError: see :func:`check_inference_options` (before the model is touched).
    """
    check_inference_options(scan_backend, max_fused_channels, half)
    switch_to_deploy(model)
    model.eval()
    if fold_axial:
        for mixer in [m for m in model.modules() if isinstance(m, LaplaceMixer)]:
            if isinstance(mixer.conv2d, AxialRepDW):
                mixer.conv2d = mixer.conv2d.to_dense()
    if fuse_blocks:
        for parent in list(model.modules()):
            for name, block in list(parent.named_children()):
                if (isinstance(block, (LocalBlock, TinyViMBlock))
                        and block.mlp.fc2.reparam.out_channels <= max_fused_channels):
                    setattr(parent, name, block.to_fused())
    if fuse_mixers:
        for parent in list(model.modules()):
            if isinstance(parent, FusedLaplaceMixer):
                continue  # fused already (a second call)
            for name, mixer in list(parent.named_children()):
                if isinstance(mixer, LaplaceMixer):
                    setattr(parent, name, mixer.to_fused())
    if scan_backend is not None:
        for scan in model.modules():
            if isinstance(scan, SelectiveScan):
                scan.backend = scan_backend
    if half is not None:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.to(half)
    if channels_last:
        for backbone in [m for m in model.modules() if isinstance(m, TinyViM)]:
            backbone.to(memory_format=torch.channels_last)
    return model.eval()  # the new modules too
