"""tinyvim_mm: TinyViM for OpenMMLab.

Importing the package registers its modules in MMEngine's registries, so that
mmpretrain, mmdet and mmseg configs can use ``type='TinyViM'`` after
``custom_imports=dict(imports=['tinyvim_mm'])``.
"""
from .models import TinyViM, switch_to_deploy
from .version import __version__

__all__ = ['TinyViM', 'switch_to_deploy', '__version__']
