from .conv_bn import ConvBN, fuse_conv_bn_weights
from .ffn import ConvFFN, FusedFFN
from .rep_dw import AxialRepDW, RepDW
from .reparam import switch_to_deploy
from .laplace_mixer import (FusedLaplaceMixer, LaplaceMixer, SelectiveScan, cross_merge,
                            cross_scan)

__all__ = [
    'ConvBN', 'fuse_conv_bn_weights', 'ConvFFN', 'FusedFFN', 'RepDW', 'AxialRepDW',
    'switch_to_deploy', 'FusedLaplaceMixer', 'LaplaceMixer', 'SelectiveScan', 'cross_scan',
    'cross_merge'
]
