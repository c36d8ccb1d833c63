"""TinyViM backbone: registry, configuration, shapes, training options, errors."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS as ROOT_MODELS

from tinyvim_mm.models import TinyViM
from tinyvim_mm.models.backbones.tinyvim import LocalBlock, TinyViMBlock
from tinyvim_mm.models.layers import LaplaceMixer, SelectiveScan
from tinyvim_mm.models.layers.laplace_mixer import _upsample_to


def test_registered_once_and_built_by_every_toolbox():
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    assert ROOT_MODELS.get('TinyViM') is TinyViM
    for registry in (CLS_MODELS, DET_MODELS, SEG_MODELS):
        assert 'TinyViM' not in registry._module_dict  # found through the root
        model = registry.build(dict(type='TinyViM', arch='b', out_indices=(1, 3)))
        assert isinstance(model, TinyViM)
        assert model.out_channels == (96, 384)


@pytest.mark.parametrize('arch,widths,depths', [
    ('s', (48, 64, 168, 224), (3, 3, 9, 6)),
    ('b', (48, 96, 192, 384), (4, 3, 10, 5)),
    ('l', (64, 128, 384, 512), (4, 4, 12, 6)),
])
def test_arch_layout(arch, widths, depths):
    model = TinyViM(arch)
    assert tuple(len(s) for s in model.stages) == depths
    assert tuple(s[0].mlp.fc1.c.in_channels for s in model.stages) == widths
    for i, stage in enumerate(model.stages):
        mixers = [j for j, block in enumerate(stage) if isinstance(block, TinyViMBlock)]
        assert mixers == ([depths[i] // 2, depths[i] - 1] if i == 2 else [depths[i] - 1])
        assert all(isinstance(b, LocalBlock) for j, b in enumerate(stage) if j not in mixers)
    pools = [stage[-1].op.pool_size for stage in model.stages]
    lows = [stage[-1].op.low_channels for stage in model.stages]
    assert pools == [8, 4, 2, 1]
    assert lows == [widths[0] // 4, widths[1] // 2, widths[2] // 2, widths[3] * 3 // 4]


def test_arch_errors():
    with pytest.raises(ValueError, match="Unknown TinyViM arch 'xl'"):
        TinyViM('xl')
    with pytest.raises(ValueError, match='lacks'):
        TinyViM(dict(widths=(8, 16, 32, 64)))
    with pytest.raises(ValueError, match='Unknown TinyViM arch keys'):
        TinyViM(dict(widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), heads=2))
    with pytest.raises(ValueError, match='needs 4 values'):
        TinyViM(dict(widths=(8, 16, 32), depths=(1, 1, 1)))
    with pytest.raises(ValueError, match='frozen_stages'):
        TinyViM('s', frozen_stages=5)


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=(4, )), r'out_indices.*\[-4, 3\]'),
    (dict(out_indices=(-5, )), r'out_indices.*\[-4, 3\]'),  # was silently stage 3
    (dict(out_indices=(-9, )), r'out_indices.*\[-4, 3\]'),
    (dict(out_indices=(1, -3)), 'twice'),  # -3 is stage 1
    (dict(out_indices=()), 'non-empty'),
    (dict(scan_backend='bogus'), "Unknown selective-scan backend 'bogus'"),  # was at forward
    (dict(frozen_stages=-2), 'frozen_stages'),
    (dict(frozen_stages=1.5), 'frozen_stages'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(in_channels=0), 'in_channels'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     'model.pretrained=None'),
])
def test_argument_errors_at_build(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TinyViM('s', **kwargs)


def test_negative_out_indices_count_from_the_last_stage():
    assert TinyViM('s', out_indices=(-1, -4)).out_indices == (0, 3)
    assert TinyViM('s', out_indices=-2).out_channels == (168, )


def test_custom_arch_dict():
    model = TinyViM(dict(widths=(16, 32, 64, 96), depths=(1, 1, 2, 1), pool_sizes=(4, 2, 2, 1)))
    outs = model.eval()(torch.rand(1, 3, 96, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 24, 24), (1, 32, 12, 12), (1, 64, 6, 6),
                                              (1, 96, 3, 3)]


@pytest.mark.parametrize('size', [(224, 224), (64, 64), (389, 517), (800, 1333)])
def test_any_input_size(size):
    model = TinyViM('s').eval()
    h, w = size
    with torch.no_grad():
        outs = model(torch.rand(1, 3, h, w))
    h, w = (h + 1) // 2, (w + 1) // 2
    for i, out in enumerate(outs):
        h, w = (h + 1) // 2, (w + 1) // 2  # each stride-2 conv rounds up
        assert out.shape == (1, model.arch['widths'][i], h, w)
        assert torch.isfinite(out).all()


def test_laplace_residual_on_any_size():
    """Where H, W don't divide the pool factor, every pixel still subtracts the
    mean of its own (clipped) pool window, and the scan output is upsampled on
    the same grid."""
    k, h, w = 4, 13, 10
    x = torch.randn(1, 2, h, w)
    up = _upsample_to(F.avg_pool2d(x, k, ceil_mode=True), k, x, 'nearest')
    for i in range(h):
        for j in range(w):
            window = x[..., i // k * k:(i // k + 1) * k, j // k * k:(j // k + 1) * k]
            torch.testing.assert_close(up[..., i, j], window.mean((-2, -1)))
    y = torch.randn(1, 2, 4, 3)
    bilinear = _upsample_to(y, k, x, 'bilinear')
    assert bilinear.shape == (1, 2, h, w)
    mixer = LaplaceMixer(16, 0.5, pool_size=4).eval()
    with torch.no_grad():
        out = mixer(torch.randn(1, 16, h, w))
    assert out.shape == (1, 16, h, w) and torch.isfinite(out).all()


def test_bad_inputs():
    model = TinyViM('s')
    with pytest.raises(ValueError, match='4-D'):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match='3 input channels, got an input with 1'):
        model(torch.rand(1, 1, 64, 64))
    gray = TinyViM('s', in_channels=1, out_indices=(3, )).eval()
    assert gray(torch.rand(1, 1, 64, 64))[0].shape == (1, 224, 2, 2)


def test_out_indices_and_norms():
    model = TinyViM('s', out_indices=(0, 2))
    names = {n.split('.')[0] for n, _ in model.named_parameters()}
    assert {'norm0', 'norm4'} <= names and not {'norm2', 'norm6'} & names
    outs = model.eval()(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [48, 168]


def test_outputs_keep_the_input_layout():
    """Channels-last weights make every activation channels-last; the maps still come
    back in the input's layout (what mmcv's RoIAlign needs), with the same values."""
    torch.manual_seed(0)
    plain = TinyViM('s').eval()
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 96, 80)
    cl = torch.channels_last
    with torch.no_grad():
        expected = plain(x)
        for inp, layout in [(x, torch.contiguous_format), (x.contiguous(memory_format=cl), cl)]:
            for model in (plain, fast):
                outs = model(inp)
                assert all(o.is_contiguous(memory_format=layout) for o in outs)
                for o, e in zip(outs, expected):
                    torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-4)


def test_frozen_stages_and_norm_eval():
    model = TinyViM('s', frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [model.patch_embed, model.network[0], model.network[1], model.network[2], model.norm0,
              model.norm2]
    for module in frozen:
        assert not any(p.requires_grad for p in module.parameters())
        assert not any(m.training for m in module.modules())
    assert all(p.requires_grad for p in model.network[3].parameters())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)  # norm_eval
    assert model.network[4].training  # non-BN modules still train

    model = TinyViM('s', frozen_stages=0)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert all(p.requires_grad for p in model.network.parameters())


def test_drop_path_increases_linearly():
    model = TinyViM('s', drop_path_rate=0.1)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for stage in model.stages for b in stage]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(rates, rates[1:]))


def test_with_cp_matches_plain_gradients():
    torch.manual_seed(0)
    plain = TinyViM('s', scan_backend='torch')
    ckpt = TinyViM('s', with_cp=True, scan_backend='torch')
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.train()
        loss = sum(o.square().mean() for o in model(x))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_scan_backend_propagates():
    model = TinyViM('s', scan_backend='torch')
    scans = [m for m in model.modules() if isinstance(m, SelectiveScan)]
    assert len(scans) == 5 and {s.backend for s in scans} == {'torch'}


def test_init_weights_default():
    model = TinyViM('s')
    model.init_weights()
    conv = model.network[0][0].mlp.fc1.c
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.2)
    mixer = model.network[0][-1].op
    assert torch.equal(mixer.Ds, torch.ones_like(mixer.Ds))
    assert torch.allclose(mixer.A_logs[0].exp(), torch.arange(1., 9.))
    dt = torch.nn.functional.softplus(mixer.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
