"""Conv + BatchNorm pair that folds into one convolution for deployment."""
from typing import Tuple, Union

import torch
import torch.nn as nn

_Size = Union[int, Tuple[int, int]]


def fuse_conv_bn_weights(weight: torch.Tensor, bias: Union[torch.Tensor, None],
                         bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold ``bn(conv(x))`` into one conv's ``(weight, bias)``.

    Args:
        weight: conv weight ``(C_out, C_in / groups, kh, kw)``.
        bias: conv bias ``(C_out,)`` or ``None``.
        bn: the BatchNorm applied to the conv output (its running statistics are used).
    """
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    fused_w = weight * scale.reshape(-1, 1, 1, 1)
    fused_b = bn.bias - bn.running_mean * scale
    if bias is not None:
        fused_b = fused_b + bias * scale
    return fused_w, fused_b


class ConvBN(nn.Module):
    """``BN(Conv2d(x))`` with a bias-free conv (the released ``Conv2d_BN``).

    Keys ``c`` (conv) and ``bn`` match the released checkpoints. After
    :meth:`switch_to_deploy` the pair is a single biased conv ``reparam``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: conv kernel size.
        stride: conv stride.
        padding: conv padding.
        groups: conv groups.
        bn_weight_init: initial BN scale.
        deploy: build the folded single-conv form directly.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: _Size = 1,
                 stride: int = 1,
                 padding: _Size = 0,
                 groups: int = 1,
                 bn_weight_init: float = 1.0,
                 deploy: bool = False) -> None:
        super().__init__()
        self.deploy = deploy
        conv_args = (in_channels, out_channels, kernel_size, stride, padding)
        if deploy:
            self.reparam = nn.Conv2d(*conv_args, groups=groups, bias=True)
            return
        self.c = nn.Conv2d(*conv_args, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.reparam(x)
        return self.bn(self.c(x))

    @torch.no_grad()
    def fused_weight_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``(weight, bias)`` of the equivalent single conv."""
        if self.deploy:
            return self.reparam.weight, self.reparam.bias
        return fuse_conv_bn_weights(self.c.weight, None, self.bn)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        weight, bias = self.fused_weight_bias()
        c = self.c
        self.reparam = nn.Conv2d(
            c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
            groups=c.groups, bias=True).to(weight.device, weight.dtype)
        self.reparam.weight.copy_(weight)
        self.reparam.bias.copy_(bias)
        del self.c, self.bn
        self.deploy = True
