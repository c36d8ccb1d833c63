from .tinyvim import (Downsample, FusedTinyViMBlock, LocalBlock, TinyViM, TinyViMBlock,
                      check_in_channels)

__all__ = [
    'TinyViM', 'LocalBlock', 'TinyViMBlock', 'FusedTinyViMBlock', 'Downsample', 'check_in_channels'
]
