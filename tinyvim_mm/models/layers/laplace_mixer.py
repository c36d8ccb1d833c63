"""The Laplace mixer of TinyViM blocks: frequency split + 2-D selective scan."""
import math
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyvim_mm.ops import (check_backend, cross_selective_scan, cross_selective_scan_train,
                            fused_cross_scan_block, fused_mixer_unsupported, mixer_merge,
                            resolve_backend, scan_chunked_export, selective_scan,
                            silu_avg_pool, softplus_export, split_projection)
from tinyvim_mm.ops.device import log_once
from tinyvim_mm.ops.onnx_shapes import Size, crop_like, reshape

from .conv_bn import ConvBN
from .rep_dw import AxialRepDW, RepDW, embed_depthwise
from .reparam import switch_to_deploy
from .weight_cache import DerivedWeights

NUM_DIRECTIONS = 4


class SelectiveScan(nn.Module):
    """Parameter-free module around :func:`tinyvim_mm.ops.selective_scan`.

    Being a module lets a model switch its scan backend in one place
    (``module.backend = 'torch'``) and lets FLOP counters find the scan.
    """

    def __init__(self, backend: str = 'auto') -> None:
        super().__init__()
        self.backend = check_backend(backend)

    def forward(self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                B: torch.Tensor, C: torch.Tensor, D: torch.Tensor,
                delta_bias: torch.Tensor) -> torch.Tensor:
        return selective_scan(u, delta, A, B, C, D, delta_bias,
                              delta_softplus=True, backend=self.backend)

    def extra_repr(self) -> str:
        return f'backend={self.backend!r}'


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """Unfold ``(B, D, H, W)`` into 4 sequences ``(B, 4, D, H*W)``: row-major,
    column-major, and both reversed."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    xs = torch.stack([rows, cols], dim=1)
    return torch.cat([xs, xs.flip(-1)], dim=1)


def cross_merge(ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sum the 4 direction outputs ``(B, 4, D, H*W)`` back on the grid:
    ``(B, D, H, W)``."""
    b, _, d, _ = ys.shape
    ys = ys[:, :2] + ys[:, 2:].flip(-1)
    rows = ys[:, 0].view(b, d, height, width)
    cols = ys[:, 1].view(b, d, width, height).transpose(2, 3)
    return rows + cols


def cross_scan_channels_last(x: torch.Tensor) -> torch.Tensor:
    """:func:`cross_scan` with channels last: ``(B, D, H, W) -> (B, 4, H*W, D)``."""
    d = x.shape[1]
    rows = reshape(x.permute(0, 2, 3, 1), [0, -1, d])
    cols = reshape(x.permute(0, 3, 2, 1), [0, -1, d])
    xs = torch.stack([rows, cols], dim=1)
    return torch.cat([xs, xs.flip(2)], dim=1)


def cross_merge_channels_last(ys: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """:func:`cross_merge` with channels last: ``(B, 4, H*W, D) -> (B, H, W, D)`` on the
    ``H x W`` grid of ``grid`` ``(B, D, H, W)``."""
    d = ys.shape[-1]
    ys = ys[:, :2] + ys[:, 2:].flip(2)
    rows = reshape(ys[:, 0], [0, Size(2), -1, d], grid)
    cols = reshape(ys[:, 1], [0, Size(3), -1, d], grid).transpose(1, 2)
    return rows + cols


def _upsample_to(x: torch.Tensor, factor: int, like: torch.Tensor, mode: str) -> torch.Tensor:
    """Upsample by ``factor`` and crop to ``like``'s height and width: the inverse
    geometry of a ``ceil_mode`` average pool, for any input size."""
    return crop_like(F.interpolate(x, scale_factor=factor, mode=mode), like)


class LaplaceMixer(nn.Module):
    """Token mixer of a TinyViM block (the released ``SS2D``).

    ``in_proj`` (ConvBN 1x1) -> axial Rep inception -> SiLU, then a channel
    split: the first ``int(C * low_ratio)`` channels (low frequency) are
    average-pooled by ``pool_size``, scanned in 4 directions by a selective
    scan, layer-normed and upsampled back, plus the Laplace residual
    ``low - up(pool(low))``; the rest (high frequency) go through a 3x3 RepDW.
    Both are concatenated and projected by ``out_proj``.
    Shapes: ``(B, C, H, W) -> (B, C, H, W)`` for any ``H, W``.

    Args:
        channels: input/output channels ``C``.
        low_ratio: fraction of channels sent through the scan.
        pool_size: average-pool factor before the scan (1: no pooling).
        d_state: SSM state size ``N``.
        scan_backend: selective-scan backend, see :mod:`tinyvim_mm.ops.scan`; with
            ``'triton'`` (see :meth:`ssm`) the whole cross scan is one fused op.
        deploy: build the folded form of the conv layers directly.
    """

    def __init__(self,
                 channels: int,
                 low_ratio: float,
                 pool_size: int,
                 d_state: int = 8,
                 scan_backend: str = 'auto',
                 deploy: bool = False) -> None:
        super().__init__()
        low = int(channels * low_ratio)
        if not 0 < low < channels:
            raise ValueError(
                f'low_ratio={low_ratio} leaves {low} of {channels} channels for '
                'the scan; it must leave at least one channel in each branch')
        if pool_size < 1:
            raise ValueError(f'pool_size must be >= 1, got {pool_size}')
        self.channels = channels
        self.low_channels = low
        self.pool_size = pool_size
        self.d_state = d_state
        self.dt_rank = math.ceil(channels / 16)
        k = NUM_DIRECTIONS

        self.in_proj = ConvBN(channels, channels, deploy=deploy)
        self.conv2d = AxialRepDW(channels, deploy=deploy)
        self.act = nn.SiLU()
        self.local_conv = RepDW(channels - low, deploy=deploy)

        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, low))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, low, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, low))
        self.A_logs = nn.Parameter(torch.empty(k * low, d_state))
        self.Ds = nn.Parameter(torch.empty(k * low))
        self.scan = SelectiveScan(scan_backend)
        self._scan_weight_cache = DerivedWeights()
        self.out_norm = nn.LayerNorm(low)
        self.out_proj = ConvBN(channels, channels, deploy=deploy)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1,
                             dt_floor: float = 1e-4) -> None:
        """Mamba initialisation: S4D-real ``A``, ``D = 1``, log-uniform ``dt``."""
        low, rank = self.low_channels, self.dt_rank
        bound = low**-0.5  # nn.Linear's default for x_proj
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_projs_weight, -rank**-0.5, rank**-0.5)
        dt = torch.exp(
            torch.rand_like(self.dt_projs_bias) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(a).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def ssm(self, x: torch.Tensor) -> torch.Tensor:
        """4-direction selective scan + LayerNorm: ``(B, D, h, w) -> (B, D, h, w)``,
        accumulated in fp32.

        With the ``'triton'`` backend (what ``'auto'`` picks on GPUs Triton runs on) the
        whole cross scan is one fused op that reads the inputs at their pixels (training
        and inference; at inference, large batches of short scans take the kernel that
        also applies the LayerNorm). Otherwise the directions are cross-scanned into
        sequences and scanned by the selected backend."""
        if torch.onnx.is_in_onnx_export():
            return self._ssm_export(x)
        backend = resolve_backend(self.scan.backend, x.device, x.dtype)
        if backend == 'triton':
            if not torch.is_grad_enabled():
                block_d = fused_cross_scan_block(x)
                if block_d is not None:
                    return self._ssm_fused(x, block_d)
            y = cross_selective_scan_train(x, *self._scan_args(x))
            return self.out_norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        b, d, h, w = x.shape
        length = h * w
        xs = cross_scan(x)
        x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, self.x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, self.dt_projs_weight)
        ys = self.scan(
            xs.reshape(b, -1, length).float(),
            dts.reshape(b, -1, length).float(),
            -torch.exp(self.A_logs.float()),
            bs.float().contiguous(),
            cs.float().contiguous(),
            self.Ds.float(),
            self.dt_projs_bias.float().flatten())
        y = cross_merge(ys.view(b, NUM_DIRECTIONS, d, length), h, w)
        y = self.out_norm(y.permute(0, 2, 3, 1))
        return y.permute(0, 3, 1, 2)

    def _scan_args(self, x: torch.Tensor) -> tuple:
        """``(proj, A, D, delta_bias)`` of the fused cross scan of ``x``.

        ``x_proj`` and ``dt_proj`` are per pixel, so they run in the pixels' natural
        order, folded into one ``(4d + 8N) x d`` matrix (:meth:`_scan_weights`); its
        output ``proj`` ``(B, h, w, 4d + 8N)`` holds ``delta``, ``B``, ``C`` of the 4
        directions (:func:`~tinyvim_mm.ops.split_projection`), read by the kernels at
        the pixels each direction visits (no cross-scanned copies)."""
        pixels = x.permute(0, 2, 3, 1)  # (B, h, w, d): contiguous for channels-last x
        weight, A = self._scan_weights(pixels.dtype)
        proj = F.linear(pixels, weight)  # (B, h, w, K*d + 2*K*N)
        return proj, A, self.Ds.float(), self.dt_projs_bias.float().flatten()

    def _scan_weights(self, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """The folded ``[dt_proj @ x_proj[:r]; x_proj[B]; x_proj[C]]`` projection
        ``(4d + 8N, d)`` in ``dtype`` and ``A = -exp(A_logs)`` (float32).

        In the folded (deploy) form without gradients both are kept, per ``dtype``, until
        a parameter they come from changes (:class:`DerivedWeights`): five small kernels
        per mixer and call fewer, which at batch 1 is most of their cost. Training-form
        models build them on every call: their weights may also change through ``.data``,
        which leaves the version alone (MMEngine's EMA swap)."""
        def build() -> Tuple[torch.Tensor, torch.Tensor]:
            k, n, r, d = NUM_DIRECTIONS, self.d_state, self.dt_rank, self.low_channels
            with torch.autocast(self.A_logs.device.type, enabled=False):
                x_proj = self.x_proj_weight.float()  # (K, r + 2N, d)
                dt_weight = torch.bmm(self.dt_projs_weight.float(), x_proj[:, :r])  # (K, d, d)
                weight = torch.cat([dt_weight.reshape(k * d, d),
                                    x_proj[:, r:r + n].reshape(k * n, d),
                                    x_proj[:, r + n:].reshape(k * n, d)]).to(dtype)
                return weight, -torch.exp(self.A_logs.float())
        if not self.in_proj.deploy or torch.is_grad_enabled():
            return build()
        return self._scan_weight_cache.get(
            dtype, (self.x_proj_weight, self.dt_projs_weight, self.A_logs), build)

    def _ssm_export(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`ssm` while exporting to ONNX (float32, any batch and size): channels last
        throughout, ``x_proj`` / ``dt_proj`` folded into one ``(d, d + 2N)`` matrix per
        direction and ``A`` precomputed (constants in the exported graph), the scan in
        the loop-free chunked form of :func:`tinyvim_mm.ops.scan_chunked_export`."""
        k, n, r = NUM_DIRECTIONS, self.d_state, self.dt_rank
        x_proj = self.x_proj_weight.float()  # (K, r + 2N, d)
        dt_weight = torch.bmm(self.dt_projs_weight.float(), x_proj[:, :r])  # (K, d, d)
        weight = torch.cat([dt_weight, x_proj[:, r:]], 1).transpose(1, 2)  # (K, d, d + 2N)
        A = -torch.exp(self.A_logs.float()).view(k, -1, n).transpose(1, 2)  # (K, N, d)
        xs = cross_scan_channels_last(x.float())  # (B, K, L, d)
        dts, bs, cs = torch.matmul(xs, weight).split([self.low_channels, n, n], dim=-1)
        dts = softplus_export(dts + self.dt_projs_bias.float().view(k, 1, -1))
        ys = scan_chunked_export(xs, dts, A, bs, cs)
        ys = ys + self.Ds.float().view(k, 1, -1) * xs
        y = self.out_norm(cross_merge_channels_last(ys, x))  # (B, h, w, d)
        return y.permute(0, 3, 1, 2)

    def _ssm_fused(self, x: torch.Tensor, block_d: int) -> torch.Tensor:
        """:meth:`ssm` by one Triton kernel that also applies the LayerNorm (inference)."""
        proj, A, D, delta_bias = self._scan_args(x)
        delta, B, C = split_projection(proj, x.shape[1], self.d_state)
        return cross_selective_scan(x, delta, A, B, C, D, delta_bias,
                                    self.out_norm.weight.float(), self.out_norm.bias.float(),
                                    self.out_norm.eps, block_d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.mix(self.conv2d(self.in_proj(x))))

    def mix(self, t: torch.Tensor) -> torch.Tensor:
        """SiLU, frequency split, scan and Laplace residual, depth-wise conv, concatenation:
        ``out_proj``'s input from the activation ``t`` before the SiLU,
        ``(B, C, H, W) -> (B, C, H, W)``."""
        x = self.act(t)
        split = [self.low_channels, self.channels - self.low_channels]
        if self.widened:
            low, high = torch.split(self.local_conv(x), split, dim=1)
        else:
            low, high = torch.split(x, split, dim=1)
            high = self.local_conv(high)
        k = self.pool_size
        if k > 1:
            pooled = F.avg_pool2d(low, k, ceil_mode=True)
            residual = low - _upsample_to(pooled, k, low, 'nearest')
            low = _upsample_to(self.ssm(pooled), k, low, 'bilinear') + residual
        else:
            low = self.ssm(low)
        return torch.cat([low.to(high.dtype), high], dim=1)

    @property
    def widened(self) -> bool:
        """Whether the high-frequency conv runs over all channels (:meth:`widen_local_conv`)."""
        return self.local_conv.channels == self.channels

    def widen_local_conv(self) -> None:
        """Make the folded high-frequency depth-wise conv one over all channels, applied
        before the channel split, that passes the low-frequency channels through (identity
        tap, bias 0): same result (an export form: onnxruntime runs the conv in its blocked
        layout, about 1 % less TinyViM-S latency at batch 1). A widened mixer stays so."""
        if self.widened:
            return
        if not self.local_conv.deploy:
            raise RuntimeError('LaplaceMixer.widen_local_conv() needs the folded mixer: call '
                               'switch_to_deploy() first')
        self.local_conv.reparam = embed_depthwise(self.local_conv.reparam, self.channels,
                                                  slice(self.low_channels, self.channels))
        self.local_conv.channels = self.channels

    def to_fused(self) -> 'FusedLaplaceMixer':
        """The folded mixer with its element-wise work in two Triton kernels."""
        switch_to_deploy(self, include_self=False)
        return FusedLaplaceMixer(self)


class FusedLaplaceMixer(nn.Module):
    """Inference form of a folded :class:`LaplaceMixer`: between ``conv2d`` and
    ``out_proj``, SiLU + average pooling run as one kernel and SiLU, the Laplace
    residual, both upsamplings, the high-frequency depth-wise conv and the concatenation
    as another (:mod:`tinyvim_mm.ops.mixer`); the scan is the mixer's. Built by
    :meth:`LaplaceMixer.to_fused`. ``(B, C, H, W) -> (B, C, H, W)``.

    Where the kernels cannot run (CPU, no Triton) or the activations are not
    channels-last (the kernels' tiles are coalesced along channels) it computes the same
    with the mixer's ops, with a one-line log; with gradients, in training mode, while
    exporting to ONNX and while ``torch.compile`` traces it, silently. Compiled, the plain
    ops are faster: inductor fuses them with their neighbours, which it cannot do across
    the two kernels (TinyViM-S on an H200, fp16, channels-last: 1.08x the throughput at
    batch 1024 and 1.08x shorter batch-1 latency than with the kernels; eager, the kernels
    are 1.31x resp. 1.04x faster).

    Args:
        mixer: the folded mixer (its weights are used, not copied).
    """

    def __init__(self, mixer: LaplaceMixer) -> None:
        super().__init__()
        if not mixer.local_conv.deploy:
            raise RuntimeError('FusedLaplaceMixer needs a folded LaplaceMixer: call '
                               'switch_to_deploy() first (or use LaplaceMixer.to_fused())')
        if mixer.widened:
            raise RuntimeError('FusedLaplaceMixer needs the high-frequency conv of the '
                               'high-frequency channels; this mixer was widened for export')
        self.mixer = mixer
        self.train(mixer.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixer = self.mixer
        t = mixer.conv2d(mixer.in_proj(x))
        if (self.training or torch.is_grad_enabled() or torch.onnx.is_in_onnx_export()
                or torch.compiler.is_compiling()):
            return mixer.out_proj(mixer.mix(t))
        reason = fused_mixer_unsupported(t)
        if not reason and not t.is_contiguous(memory_format=torch.channels_last):
            # the kernels read channels-last tiles coalesced; NCHW ones would not be
            reason = 'the kernels take channels-last activations, these are not'
        if reason:
            log_once(f'tinyvim_mm: fused mixer kernels unavailable ({reason}); using the '
                     'plain ops')
            return mixer.out_proj(mixer.mix(t))
        k = mixer.pool_size
        pooled = silu_avg_pool(t[:, :mixer.low_channels], k)
        conv = mixer.local_conv.reparam
        return mixer.out_proj(mixer_merge(t, pooled, mixer.ssm(pooled), conv.weight, conv.bias, k))
