"""tinyvim_mm: TinyViM for OpenMMLab.

Importing the package registers its modules in MMEngine's registries, so that
mmpretrain, mmdet and mmseg configs can use ``type='TinyViM'`` after
``custom_imports=dict(imports=['tinyvim_mm'])``.
"""
from . import engine  # noqa: F401  (registers optimizer wrappers and hooks)
from .models import TinyViM, switch_to_deploy
from .utils import mim_compat, safe_load  # noqa: F401  (tinyvim_mm:: configs, safe checkpoints)
from .version import __version__

__all__ = ['TinyViM', 'switch_to_deploy', '__version__']
