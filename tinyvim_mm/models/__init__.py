"""Models: layers, the TinyViM backbone, heads and classifiers."""
from .backbones import TinyViM
from .classifiers import TinyViMClassifier
from .layers import switch_to_deploy

__all__ = ['TinyViM', 'TinyViMClassifier', 'switch_to_deploy']
