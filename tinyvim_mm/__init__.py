"""tinyvim_mm: TinyViM for OpenMMLab.

Importing the package registers its modules in MMEngine's registries, so that
mmpretrain, mmdet and mmseg configs can use ``type='TinyViM'`` after
``custom_imports=dict(imports=['tinyvim_mm'])``.
"""
import tinyvim_mm_compat

from . import engine  # noqa: F401  (registers optimizer wrappers and hooks)
from .checkpoint import allow_mmengine_checkpoint_types
from .models import TinyViM, switch_to_deploy
from .version import __version__

# MMEngine's checkpoints (numpy scalars, message-hub buffers) load with
# torch.load(weights_only=True) in any tool, resume included.
allow_mmengine_checkpoint_types()

# `_base_ = 'tinyvim_mm::NAME.py'`: installed packages get this at interpreter start
# (tinyvim_mm-mmengine.pth); editable installs and source checkouts get it here.
tinyvim_mm_compat.install()

__all__ = ['TinyViM', 'switch_to_deploy', '__version__']
