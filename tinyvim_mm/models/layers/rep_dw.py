"""Reparameterizable depth-wise convolutions."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv_bn import ConvBN, fuse_conv_bn_weights


@torch.no_grad()
def embed_depthwise(conv: nn.Conv2d, channels: int, own: slice) -> nn.Conv2d:
    """A depth-wise conv over ``channels`` channels that applies the depth-wise ``conv``
    to the channels ``own`` and passes the others through (an identity tap at the
    kernel's centre, bias 0): exact, an export form for runtimes that run a conv over
    all channels faster than a split, a conv and a concatenation."""
    wide = nn.Conv2d(channels, channels, conv.kernel_size, padding=conv.padding,
                     groups=channels).to(conv.weight)
    wide.weight.zero_()
    wide.weight[:, :, conv.padding[0], conv.padding[1]] = 1.0
    wide.weight[own] = conv.weight
    wide.bias.zero_()
    wide.bias[own] = conv.bias
    return wide


class RepDW(nn.Module):
    """``BN(ConvBN_dw_k(x) + Conv_dw_1x1(x) + x)``, foldable into one dw conv.

    With ``kernel_size=(3, 3)`` this is the released ``RepDW``; ``(1, 7)`` and
    ``(7, 1)`` give the axial variants used by the Laplace mixer. Shapes:
    ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: number of channels ``C``.
        kernel_size: ``(kh, kw)``, both odd.
        deploy: build the folded single-conv form directly.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: Tuple[int, int] = (3, 3),
                 deploy: bool = False) -> None:
        super().__init__()
        kh, kw = kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f'RepDW needs odd kernel sizes, got {kernel_size}')
        self.channels = channels
        self.kernel_size = (kh, kw)
        self.padding = (kh // 2, kw // 2)
        self.deploy = deploy
        if deploy:
            self.reparam = nn.Conv2d(
                channels, channels, self.kernel_size, 1, self.padding,
                groups=channels, bias=True)
            return
        self.conv = ConvBN(
            channels, channels, self.kernel_size, 1, self.padding, groups=channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.reparam(x)
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        kh, kw = self.kernel_size
        ph, pw = self.padding
        weight, bias = self.conv.fused_weight_bias()
        # The 1x1 branch and the identity sit at the kernel centre.
        centre = F.pad(self.conv1.weight, (pw, pw, ph, ph))
        identity = F.pad(torch.ones_like(self.conv1.weight), (pw, pw, ph, ph))
        weight = weight + centre + identity
        bias = bias + self.conv1.bias
        weight, bias = fuse_conv_bn_weights(weight, bias, self.bn)
        self.reparam = nn.Conv2d(
            self.channels, self.channels, self.kernel_size, 1, self.padding,
            groups=self.channels, bias=True).to(weight.device, weight.dtype)
        self.reparam.weight.copy_(weight)
        self.reparam.bias.copy_(bias)
        del self.conv, self.conv1, self.bn
        self.deploy = True


class AxialRepDW(nn.Module):
    """The mixer's "Rep inception": half the channels through a 7x1 RepDW
    (``dwconv_w``), the other half through a 1x7 RepDW (``dwconv_h``).

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: number of channels ``C``; the first ``C // 2`` go through
            ``dwconv_w``.
        kernel: length of the axial kernels.
        deploy: build the folded form directly.
    """

    def __init__(self, channels: int, kernel: int = 7, deploy: bool = False) -> None:
        super().__init__()
        self.split = (channels // 2, channels - channels // 2)
        self.dwconv_w = RepDW(self.split[0], (kernel, 1), deploy=deploy)
        self.dwconv_h = RepDW(self.split[1], (1, kernel), deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_w, x_h = torch.split(x, self.split, dim=1)
        return torch.cat([self.dwconv_w(x_w), self.dwconv_h(x_h)], dim=1)

    @torch.no_grad()
    def to_dense(self) -> nn.Conv2d:
        """One depth-wise ``k x k`` conv equal to this (folded) layer: the ``k x 1`` and
        ``1 x k`` kernels placed on the centre column / row. Costs ``k`` times the
        multiply-adds but one launch instead of split + 2 convs + concat."""
        if not (self.dwconv_w.deploy and self.dwconv_h.deploy):
            raise RuntimeError('AxialRepDW.to_dense() needs the folded layer: call '
                               'switch_to_deploy() first')
        conv_w, conv_h = self.dwconv_w.reparam, self.dwconv_h.reparam
        k = conv_w.kernel_size[0]
        channels = conv_w.out_channels + conv_h.out_channels
        conv = nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels).to(conv_w.weight)
        weight = conv_w.weight.new_zeros(channels, 1, k, k)
        weight[:conv_w.out_channels, :, :, k // 2] = conv_w.weight[..., 0]
        weight[conv_w.out_channels:, :, k // 2, :] = conv_h.weight[:, :, 0]
        conv.weight.copy_(weight)
        conv.bias.copy_(torch.cat([conv_w.bias, conv_h.bias]))
        return conv

    def to_sequential(self) -> nn.Sequential:
        """A depth-wise ``k x 1`` conv then a depth-wise ``1 x k`` conv, both over all channels,
        equal to this (folded) layer: each half's kernel in its conv and an identity tap
        (1 at the centre, bias 0) for the other half. ``2 k`` multiply-adds per output instead
        of ``k^2`` and no split or concatenation (onnxruntime, TinyViM-S at batch 1: about 1 %
        less latency than with :meth:`to_dense`)."""
        if not (self.dwconv_w.deploy and self.dwconv_h.deploy):
            raise RuntimeError('AxialRepDW.to_sequential() needs the folded layer: call '
                               'switch_to_deploy() first')
        channels, first = sum(self.split), self.split[0]
        return nn.Sequential(
            embed_depthwise(self.dwconv_w.reparam, channels, slice(0, first)),
            embed_depthwise(self.dwconv_h.reparam, channels, slice(first, channels)))
