"""Model-level reparameterization."""
import torch.nn as nn


def switch_to_deploy(module: nn.Module, include_self: bool = True) -> nn.Module:
    """Fold every reparameterizable layer inside ``module``, in place.

    Calls ``switch_to_deploy()`` on the outermost sub-modules that define it
    (they fold their own children) and recurses into the others, so it works
    on a bare backbone as well as on a whole classifier, detector or segmentor.

    Returns:
        The same ``module``, for chaining.
    """
    if include_self and hasattr(module, 'switch_to_deploy'):
        module.switch_to_deploy()
        return module
    for child in list(module.children()):
        switch_to_deploy(child)
    return module
