from .tinyvim import Downsample, LocalBlock, TinyViM, TinyViMBlock

__all__ = ['TinyViM', 'LocalBlock', 'TinyViMBlock', 'Downsample']
