from .backbones import TinyViM
from .layers import switch_to_deploy

__all__ = ['TinyViM', 'switch_to_deploy']
