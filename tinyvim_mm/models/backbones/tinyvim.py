"""TinyViM: frequency-decoupling hybrid Mamba backbone (ICCV 2025).

Module and parameter names follow the released checkpoints (``patch_embed``,
``network.{i}``, ``norm{i}``), so released weights load without renaming.
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import DropPath
from torch.nn.modules.batchnorm import _BatchNorm

from tinyvim_mm.ops import check_backend
from ..layers import ConvBN, ConvFFN, FusedFFN, LaplaceMixer, RepDW, switch_to_deploy


class LocalBlock(nn.Module):
    """``x + layer_scale * FFN(RepDW(x))``: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: channels ``C``.
        mlp_ratio: FFN hidden width over ``C``.
        drop_path: stochastic-depth rate of the branch.
        deploy: build the folded form directly (layer scale folded into
            ``mlp.fc2``).
    """

    def __init__(self, channels: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 deploy: bool = False) -> None:
        super().__init__()
        self.deploy = deploy
        self.dwconv = RepDW(channels, deploy=deploy)
        self.mlp = ConvFFN(channels, int(channels * mlp_ratio), deploy=deploy)
        if not deploy:
            self.layer_scale = nn.Parameter(torch.ones(channels, 1, 1))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.mlp(self.dwconv(x))
        if not self.deploy:
            branch = self.layer_scale * branch
        return x + self.drop_path(branch)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        self.dwconv.switch_to_deploy()
        self.mlp.fc1.switch_to_deploy()
        self.mlp.fc2.switch_to_deploy()
        fc2 = self.mlp.fc2.reparam
        scale = self.layer_scale.flatten()
        fc2.weight.mul_(scale.view(-1, 1, 1, 1))
        fc2.bias.mul_(scale)
        del self.layer_scale
        self.deploy = True

    def to_fused(self) -> FusedFFN:
        """The folded block as one :class:`FusedFFN` (``x + FFN(RepDW(x))``)."""
        self.switch_to_deploy()
        return FusedFFN(self.mlp.fc1.reparam, self.mlp.fc2.reparam, self.dwconv.reparam)


class TinyViMBlock(nn.Module):
    """``x + LaplaceMixer(x)`` then ``x + FFN(x)``: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: channels ``C``.
        low_ratio: fraction of channels the mixer scans.
        pool_size: the mixer's pooling factor before the scan.
        mlp_ratio: FFN hidden width over ``C``.
        drop_path: stochastic-depth rate of both branches.
        scan_backend: selective-scan backend.
        deploy: build the folded form directly.
    """

    def __init__(self, channels: int, low_ratio: float, pool_size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 scan_backend: str = 'auto', deploy: bool = False) -> None:
        super().__init__()
        self.op = LaplaceMixer(channels, low_ratio, pool_size,
                               scan_backend=scan_backend, deploy=deploy)
        self.mlp = ConvFFN(channels, int(channels * mlp_ratio), deploy=deploy)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(x))
        return x + self.drop_path(self.mlp(x))

    def to_fused(self) -> 'FusedTinyViMBlock':
        """The folded block with its FFN and residual as one :class:`FusedFFN`."""
        switch_to_deploy(self, include_self=False)
        return FusedTinyViMBlock(self.op, FusedFFN(self.mlp.fc1.reparam, self.mlp.fc2.reparam))


class FusedTinyViMBlock(nn.Module):
    """Inference form of :class:`TinyViMBlock`: ``y = x + mixer(x); y + FFN(y)`` with the
    FFN as a :class:`FusedFFN`. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, op: LaplaceMixer, ffn: FusedFFN) -> None:
        super().__init__()
        self.op = op
        self.ffn = ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(x + self.op(x))


class Downsample(nn.Module):
    """Patch merging between stages: ConvBN 3x3 stride 2 (``H, W`` halve,
    rounding up)."""

    def __init__(self, in_channels: int, out_channels: int, deploy: bool = False) -> None:
        super().__init__()
        self.proj = ConvBN(in_channels, out_channels, 3, 2, 1, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def _stem(in_channels: int, out_channels: int, deploy: bool) -> nn.Sequential:
    """Two ConvBN 3x3 stride 2 + GELU: ``(B, 3, H, W) -> (B, C0, H/4, W/4)``."""
    return nn.Sequential(
        ConvBN(in_channels, out_channels // 2, 3, 2, 1, deploy=deploy), nn.GELU(),
        ConvBN(out_channels // 2, out_channels, 3, 2, 1, deploy=deploy), nn.GELU())


@MODELS.register_module()
class TinyViM(BaseModule):
    """TinyViM backbone.

    Four stages at strides 4, 8, 16, 32. Every stage is a run of
    :class:`LocalBlock` ending in a :class:`TinyViMBlock`; stage 3 has one more
    TinyViM block at ``depth // 2``. Each requested output goes through its own
    BatchNorm (``norm{2 * stage}``, as in the released dense models).

    Args:
        arch: ``'s'``, ``'b'``, ``'l'`` or a dict with ``widths`` and ``depths``
            (4 each) and optionally ``low_ratios``, ``pool_sizes`` and
            ``mlp_ratio``.
        in_channels: input image channels.
        out_indices: stages whose (normalised) output is returned.
        frozen_stages: freeze the stem and the first ``frozen_stages`` stages
            (with their downsampling layers); ``0`` freezes only the stem,
            ``-1`` nothing.
        norm_eval: keep every BatchNorm in eval mode during training.
        drop_path_rate: stochastic depth, increasing linearly over blocks.
        with_cp: gradient checkpointing of every block (saves memory).
        scan_backend: selective-scan backend (``'auto'``, ``'triton'``,
            ``'cuda'``, ``'torch'``, ``'ref'``; see :mod:`tinyvim_mm.ops.scan`).
        deploy: build the reparameterized (folded) structure directly, to load
            weights saved after :meth:`switch_to_deploy`.
        init_cfg: mmengine init config. ``dict(type='Pretrained',
            checkpoint=PATH)`` loads a released checkpoint (classifier or dense
            layout, bare or under ``model``/``state_dict``) or an mmpretrain /
            mmdet / mmseg checkpoint of a model with this backbone.
        pretrained: deprecated (what mmseg's segmentors pass to their backbone):
            a checkpoint path, turned into ``init_cfg=dict(type='Pretrained', ...)``.

    Channels of the outputs (``out_channels``; what a neck's ``in_channels`` must be):
    S ``(48, 64, 168, 224)``, B ``(48, 96, 192, 384)``, L ``(64, 128, 384, 512)``, for
    ``out_indices=(0, 1, 2, 3)``.

    Example:
        >>> model = TinyViM('s').eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 224, 224))]
        [(1, 48, 56, 56), (1, 64, 28, 28), (1, 168, 14, 14), (1, 224, 7, 7)]
    """
    arch_settings: Dict[str, dict] = {
        's': dict(widths=(48, 64, 168, 224), depths=(3, 3, 9, 6)),
        'b': dict(widths=(48, 96, 192, 384), depths=(4, 3, 10, 5)),
        'l': dict(widths=(64, 128, 384, 512), depths=(4, 4, 12, 6)),
    }
    default_arch = dict(low_ratios=(0.25, 0.5, 0.5, 0.75), pool_sizes=(8, 4, 2, 1),
                        mlp_ratio=4.0)
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.0,
                 with_cp: bool = False,
                 scan_backend: str = 'auto',
                 deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 pretrained: Optional[str] = None) -> None:
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError(
                    f'TinyViM got both init_cfg and pretrained={pretrained!r} (mmseg segmentors '
                    'pass their model.pretrained, e.g. a ResNet URL of an inherited base, to '
                    'the backbone): set model.pretrained=None and keep init_cfg')
            warnings.warn('DeprecationWarning: TinyViM(pretrained=...) is deprecated, use '
                          'init_cfg=dict(type="Pretrained", checkpoint=...) instead')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=0.02, bias=0.),
                        dict(type='Constant', layer=['_BatchNorm', 'LayerNorm'], val=1., bias=0.)]
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        widths, depths = self.arch['widths'], self.arch['depths']
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {self.num_stages}], '
                             f'got {frozen_stages!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        check_backend(scan_backend)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy

        self.patch_embed = _stem(in_channels, widths[0], deploy)
        total = sum(depths)
        block_id = 0
        network = []
        for i, (width, depth) in enumerate(zip(widths, depths)):
            if i > 0:
                network.append(Downsample(widths[i - 1], width, deploy=deploy))
            mixer_ids = {depth - 1, depth // 2} if i == 2 else {depth - 1}
            blocks = []
            for j in range(depth):
                dpr = drop_path_rate * block_id / max(total - 1, 1)
                if j in mixer_ids:
                    blocks.append(TinyViMBlock(
                        width, self.arch['low_ratios'][i], self.arch['pool_sizes'][i],
                        self.arch['mlp_ratio'], dpr, scan_backend, deploy))
                else:
                    blocks.append(LocalBlock(width, self.arch['mlp_ratio'], dpr, deploy))
                block_id += 1
            network.append(nn.Sequential(*blocks))
        self.network = nn.ModuleList(network)
        for i in self.out_indices:
            self.add_module(f'norm{2 * i}', nn.BatchNorm2d(widths[i]))
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_settings:
                raise ValueError(f'Unknown TinyViM arch {arch!r}; choose one of '
                                 f'{sorted(cls.arch_settings)} or pass a dict')
            arch = cls.arch_settings[key]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        known = {'widths', 'depths', *cls.default_arch}
        unknown = set(arch) - known
        if unknown:
            raise ValueError(f'Unknown TinyViM arch keys {sorted(unknown)}; '
                             f'valid keys: {sorted(known)}')
        missing = {'widths', 'depths'} - set(arch)
        if missing:
            raise ValueError(f'TinyViM arch dict lacks {sorted(missing)}')
        parsed = {**cls.default_arch, **arch}
        for key in ('widths', 'depths', 'low_ratios', 'pool_sizes'):
            if len(parsed[key]) != cls.num_stages:
                raise ValueError(f'arch[{key!r}] needs {cls.num_stages} values, '
                                 f'got {parsed[key]}')
        if min(parsed['depths']) < 1 or min(parsed['widths']) < 2:
            raise ValueError(f'arch widths must be >= 2 and depths >= 1, got {parsed}')
        return parsed

    @classmethod
    def _parse_out_indices(cls, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        """Stage indices in ``[-4, 3]`` (negative ones count from the last stage), without
        duplicates; returned sorted and non-negative."""
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        n = cls.num_stages
        if not out_indices or any(not isinstance(i, int) or not -n <= i < n
                                  for i in out_indices):
            raise ValueError(f'out_indices must be non-empty stage indices in [{-n}, {n - 1}], '
                             f'got {out_indices}')
        parsed = [i % n for i in out_indices]
        if len(set(parsed)) != len(parsed):
            raise ValueError(f'out_indices {out_indices} name a stage twice')
        return tuple(sorted(parsed))

    @property
    def stages(self) -> List[nn.Sequential]:
        """The 4 block sequences (``network[0], [2], [4], [6]``)."""
        return [self.network[2 * i] for i in range(self.num_stages)]

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each returned feature map."""
        return tuple(self.arch['widths'][i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``(B, in_channels, H, W)`` -> one ``(B, C_i, ~H/2^(i+2), ~W/2^(i+2))``
        map per entry of ``out_indices``.

        The maps come back in ``x``'s memory format, whatever layout the blocks ran in
        (channels-last weights and the fused inference blocks make the activations
        channels-last): toolbox ops that read NCHW memory whatever the strides, such as
        mmcv's ``RoIAlign``, get the layout their input had."""
        if x.dim() != 4:
            raise ValueError(f'TinyViM expects a 4-D (B, C, H, W) input, got shape '
                             f'{tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'TinyViM was built for {self.in_channels} input channels, '
                             f'got an input with {x.shape[1]} (shape {tuple(x.shape)})')
        layout = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                  and not x.is_contiguous() else torch.contiguous_format)
        x = self.patch_embed(x)
        outs = []
        for idx, layer in enumerate(self.network):
            if self.with_cp and self.training and x.requires_grad:
                for block in (layer if isinstance(layer, nn.Sequential) else [layer]):
                    x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = layer(x)
            if idx % 2 == 0 and idx // 2 in self.out_indices:
                outs.append(getattr(self, f'norm{idx}')(x).contiguous(memory_format=layout))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        # Stage i owns network[2i] and the downsampling layer network[2i - 1].
        frozen = [self.patch_embed, *self.network[:max(2 * self.frozen_stages - 1, 0)]]
        frozen += [getattr(self, f'norm{2 * i}') for i in self.out_indices
                   if i < self.frozen_stages]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'TinyViM':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            from tinyvim_mm.checkpoint import load_pretrained_backbone
            load_pretrained_backbone(self, self.init_cfg['checkpoint'],
                                     prefix=self.init_cfg.get('prefix'),
                                     map_location=self.init_cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def switch_to_deploy(self) -> None:
        """Fold every Conv-BN, RepDW and layer scale into single convs, in place."""
        switch_to_deploy(self, include_self=False)
        self.deploy = True



def check_in_channels(model_cfg: dict) -> None:
    """Raise a ``ValueError`` naming both sides when what reads a TinyViM backbone's outputs
    expects other channels than they have: the neck (mmdet / mmseg ``FPN``) or, without a
    neck, the decode and auxiliary heads (e.g. UperNet, with their ``in_index``). A no-op
    for other backbones. Torch would otherwise fail only at the first forward pass, with a
    bare ``expected input[...] to have N channels``.
    """
    backbone = model_cfg.get('backbone') or {}
    if backbone.get('type') not in ('TinyViM', TinyViM):
        return
    arch = TinyViM._parse_arch(backbone.get('arch', 's'))
    out_indices = TinyViM._parse_out_indices(backbone.get('out_indices', (0, 1, 2, 3)))
    given = [arch['widths'][i] for i in out_indices]
    if model_cfg.get('neck'):
        neck = model_cfg['neck']
        consumers = [('neck', neck[0] if isinstance(neck, (list, tuple)) else neck)]
    else:
        aux = model_cfg.get('auxiliary_head') or []
        consumers = [('decode_head', model_cfg.get('decode_head'))] + [
            ('auxiliary_head', a) for a in (aux if isinstance(aux, (list, tuple)) else [aux])]
    for name, consumer in consumers:
        if not consumer or 'in_channels' not in consumer:
            continue
        wanted = consumer['in_channels']
        index = consumer.get('in_index', -1 if isinstance(wanted, int) else None)
        if isinstance(index, int):
            expected = given[index]
        elif index is None:  # the neck reads every output, in order
            expected = given
        else:
            expected = [given[i] for i in index]
        if (list(wanted) if isinstance(wanted, (list, tuple)) else wanted) != expected:
            raise ValueError(
                f'model.{name}.in_channels={wanted} does not match the TinyViM backbone '
                f"(arch={backbone.get('arch', 's')!r}, out_indices={list(out_indices)}), whose "
                f'outputs have {given} channels; set {name}.in_channels={expected}')
