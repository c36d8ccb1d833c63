from . import classifiers, heads  # noqa: F401  (registers heads and classifiers)
from .backbones import TinyViM
from .layers import switch_to_deploy

__all__ = ['TinyViM', 'switch_to_deploy']
