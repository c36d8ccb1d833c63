"""Convolutional feed-forward network."""
import torch
import torch.nn as nn

from .conv_bn import ConvBN


class ConvFFN(nn.Module):
    """``ConvBN1x1 -> GELU -> ConvBN1x1``: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: input/output channels ``C``.
        hidden_channels: hidden width (``4 C`` in TinyViM).
        deploy: build the folded form directly.
    """

    def __init__(self, channels: int, hidden_channels: int, deploy: bool = False) -> None:
        super().__init__()
        self.fc1 = ConvBN(channels, hidden_channels, deploy=deploy)
        self.act = nn.GELU()
        self.fc2 = ConvBN(hidden_channels, channels, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
