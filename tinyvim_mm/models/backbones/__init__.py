from .tinyvim import Downsample, FusedTinyViMBlock, LocalBlock, TinyViM, TinyViMBlock

__all__ = ['TinyViM', 'LocalBlock', 'TinyViMBlock', 'FusedTinyViMBlock', 'Downsample']
