"""tinyvim_mm.analysis.spectrum on synthetic signals, the Laplace-mixer branch
capture, the backbone and image loading of the figure, and tools/visualize_spectrum.py
end to end."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyvim_mm.analysis.spectrum import (MIXER_MAPS, PANELS, build_backbone,
                                          collect_mixer_maps, high_frequency_ratio,
                                          load_image, log_amplitude_spectrum,
                                          low_frequency_mask)
from tinyvim_mm.models import TinyViM

from conftest import REPO  # noqa: E402


def cosine(h: int, w: int, fy: float, fx: float) -> torch.Tensor:
    """``cos(2 pi (fy y + fx x))`` with frequencies in cycles per pixel."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                          torch.arange(w, dtype=torch.float64), indexing='ij')
    return torch.cos(2 * math.pi * (fy * y + fx * x))


def checkerboard(h: int, w: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    return ((y + x) % 2).to(torch.float64)


def test_low_frequency_image_has_less_hf_energy_than_checkerboard() -> None:
    smooth = cosine(32, 32, 1 / 32, 2 / 32)  # 1 and 2 cycles over the map
    assert high_frequency_ratio(smooth) == pytest.approx(0.0, abs=1e-9)
    assert high_frequency_ratio(checkerboard(32, 32)) == pytest.approx(1.0, abs=1e-9)
    noise = torch.randn(8, 32, 32, generator=torch.Generator().manual_seed(0))
    # white noise: the share of frequencies outside the disc, 1 - pi (r/2)^2 for r = 0.25
    assert high_frequency_ratio(noise) == pytest.approx(1 - math.pi * 0.125**2, abs=0.02)
    blurred = F.avg_pool2d(noise[None], 5, stride=1, padding=2)[0]
    assert high_frequency_ratio(smooth) < high_frequency_ratio(blurred) \
        < high_frequency_ratio(noise) < high_frequency_ratio(checkerboard(32, 32))


def test_hf_ratio_ignores_offset_scale_and_shift() -> None:
    x = torch.randn(3, 24, 40, generator=torch.Generator().manual_seed(1))
    ref = high_frequency_ratio(x)
    assert high_frequency_ratio(5 * x + 7) == pytest.approx(ref, rel=1e-9)
    assert high_frequency_ratio(torch.roll(x, (3, -5), dims=(-2, -1))) == pytest.approx(ref)
    assert high_frequency_ratio(torch.full((16, 16), 3.0)) == 0.0  # only an offset
    # a larger disc leaves less energy outside it
    assert high_frequency_ratio(x, radius=0.5) < ref < high_frequency_ratio(x, radius=0.1)


def test_hf_ratio_disc_boundary() -> None:
    """A cosine just inside / outside the disc of radius r * 0.5 cycle/pixel."""
    n, r = 64, 0.25  # disc radius 0.125 cycle/pixel = 8 bins of 1/64
    assert high_frequency_ratio(cosine(n, n, 0, 8 / n), r) == pytest.approx(0.0, abs=1e-9)
    assert high_frequency_ratio(cosine(n, n, 0, 9 / n), r) == pytest.approx(1.0, abs=1e-9)
    # diagonal: |(5, 6)| = 7.8 bins inside, |(6, 6)| = 8.5 bins outside
    assert high_frequency_ratio(cosine(n, n, 5 / n, 6 / n), r) == pytest.approx(0.0, abs=1e-9)
    assert high_frequency_ratio(cosine(n, n, 6 / n, 6 / n), r) == pytest.approx(1.0, abs=1e-9)


def test_low_frequency_mask_geometry() -> None:
    mask = low_frequency_mask(32, 32, 0.25)
    assert mask.shape == (32, 32) and mask[16, 16]  # zero frequency in the centre
    assert mask[16, 16 + 4] and not mask[16, 16 + 5]  # radius 0.25 * 32 / 2 = 4 bins
    assert torch.equal(mask, mask.flip(0).roll(1, 0))  # symmetric about the centre
    wide = low_frequency_mask(16, 64, 0.25)  # a disc in frequency: 2 rows, 8 columns
    assert wide[8, 32 + 8] and not wide[8, 32 + 9] and wide[10, 32] and not wide[11, 32]


def test_log_amplitude_spectrum_centred_and_averaged() -> None:
    x = cosine(32, 32, 0, 4 / 32)
    spec = log_amplitude_spectrum(x)
    assert spec.shape == (32, 32)
    peaks = {tuple(i.tolist()) for i in torch.nonzero(spec > spec.max() - 1e-6)}
    assert peaks == {(16, 12), (16, 20)}  # +-4 bins from the centre (16, 16)
    # batch / channel dimensions are averaged; the amplitude ignores shifts
    stack = torch.stack([x, torch.roll(x, 3, dims=-1)])[None]
    assert torch.allclose(log_amplitude_spectrum(stack), spec, atol=1e-6)
    with pytest.raises(ValueError):
        log_amplitude_spectrum(torch.zeros(5))


def test_laplace_decomposition_separates_frequencies() -> None:
    """The Laplace mixer's split: the pooled-upsampled part is low-frequency,
    the residual high-frequency."""
    x = torch.randn(4, 48, 48, generator=torch.Generator().manual_seed(2))
    up = F.interpolate(F.avg_pool2d(x[None], 4), scale_factor=4, mode='nearest')[0]
    assert high_frequency_ratio(up) < 0.5 < high_frequency_ratio(x - up)


@pytest.fixture(scope='module')
def mixer_maps():
    torch.manual_seed(0)
    model = TinyViM('s', out_indices=(3, )).eval()
    x = torch.randn(1, 3, 160, 224)  # stage maps 40x56 ... 5x7
    return model, x, collect_mixer_maps(model, x)


def test_collect_mixer_maps_branches(mixer_maps) -> None:
    model, x, records = mixer_maps
    names = [r['name'] for r in records]
    assert names == ['network.0.2.op', 'network.2.2.op', 'network.4.4.op', 'network.4.8.op',
                     'network.6.5.op']
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    for rec in records:
        mixer = model.get_submodule(rec['name'])
        low, c = rec['low_channels'], rec['channels']
        size = rec['input'].shape[-2:]
        for key in MIXER_MAPS:
            want = c if key in ('input', 'output') else low if key != 'high_out' else c - low
            assert rec[key].shape == (1, want, *size), (rec['name'], key)
        assert torch.allclose(rec['mamba'] + rec['residual'], rec['low_out'], atol=1e-5)
        with torch.no_grad():  # the branches recomputed from the mixer's public pieces
            assert torch.allclose(mixer(rec['input']), rec['output'], atol=1e-5)
            assert torch.allclose(mixer.local_conv(rec['high_in']), rec['high_out'], atol=1e-5)
            k = rec['pool_size']
            if k > 1:
                scanned = mixer.ssm(F.avg_pool2d(rec['low_in'], k, ceil_mode=True))
                up = F.interpolate(scanned, scale_factor=k, mode='bilinear')
                assert torch.allclose(up[..., :size[0], :size[1]], rec['mamba'], atol=1e-4)
            else:
                assert torch.allclose(mixer.ssm(rec['low_in']), rec['mamba'], atol=1e-4)
                assert not rec['residual'].any()


def test_mamba_branch_is_low_frequency(mixer_maps) -> None:
    """The paper's observation, already true at initialisation: the pooled
    Mamba branch is smoother than its input and than the Laplace residual."""
    _, _, records = mixer_maps
    for rec in records[:4]:  # the pooled mixers (stages 1-3, maps of 40x56 to 10x14)
        mamba = high_frequency_ratio(rec['mamba'])
        assert mamba < high_frequency_ratio(rec['low_in']), rec['name']
        assert mamba < high_frequency_ratio(rec['residual']), rec['name']


def test_collect_mixer_maps_needs_a_mixer() -> None:
    with pytest.raises(ValueError, match='LaplaceMixer'):
        collect_mixer_maps(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 4, 4))


def test_collect_mixer_maps_refuses_fused_mixers() -> None:
    """The fused inference form bypasses the hooked modules: an error, not empty maps."""
    from tinyvim_mm.deploy import optimize_for_inference
    model = optimize_for_inference(TinyViM('s'), fuse_blocks=False, scan_backend=None)
    with pytest.raises(ValueError, match=r'fused mixers \(network\.0\.2\.op, .*fuse_mixers=False'):
        collect_mixer_maps(model, torch.zeros(1, 3, 32, 32))


def test_load_image(tmp_path: Path) -> None:
    from PIL import Image
    Image.fromarray(np.full((48, 64, 3), (10, 20, 30), np.uint8)).save(tmp_path / 'img.png')
    rgb, x = load_image(str(tmp_path / 'img.png'), 96, (10, 20, 30), (2, 4, 5), to_rgb=True)
    assert rgb.shape == (96, 128, 3) and x.shape == (1, 3, 96, 128)
    assert torch.allclose(x, torch.zeros_like(x), atol=1e-5)  # (value - mean) / std
    with pytest.raises(FileNotFoundError, match='nope.png'):
        load_image(str(tmp_path / 'nope.png'), 96, (0, 0, 0), (1, 1, 1), True)
    (tmp_path / 'notes.png').write_text('not an image')
    with pytest.raises(ValueError, match='notes.png.* not a readable image'):
        load_image(str(tmp_path / 'notes.png'), 96, (0, 0, 0), (1, 1, 1), True)


def test_build_backbone_from_config_and_checkpoint(tmp_path: Path) -> None:
    """The backbone of a classification config with the weights of its checkpoint (strictly:
    another arch is refused)."""
    config = str(REPO / 'configs' / 'tinyvim_s_toy_imagenet.py')
    weights = TinyViM('s', out_indices=(3, )).state_dict()
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in weights.items()}),
               tmp_path / 'cls.pth')
    model, mean, std, to_rgb = build_backbone(config, checkpoint=str(tmp_path / 'cls.pth'))
    assert tuple(mean) == (123.675, 116.28, 103.53) and to_rgb and not model.training
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key
    other = TinyViM('b', out_indices=(3, )).state_dict()
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in other.items()}),
               tmp_path / 'b.pth')
    with pytest.raises(RuntimeError, match='does not fit'):
        build_backbone(config, checkpoint=str(tmp_path / 'b.pth'))
    assert [key for key, _ in PANELS] == list(MIXER_MAPS)


def test_visualize_spectrum_cli(tmp_path: Path) -> None:
    from PIL import Image
    img = np.zeros((96, 128, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, 128, dtype=np.uint8)  # smooth ramp
    img[30:70, 40:90] = (20, 200, 60)  # a block with sharp edges
    Image.fromarray(img).save(tmp_path / 'img.png')
    out = tmp_path / 'spec.png'
    subprocess.run([sys.executable, 'tools/visualize_spectrum.py', str(tmp_path / 'img.png'),
                    '--arch', 's', '--size', '128', '--out', str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    with Image.open(out) as fig:
        assert fig.width > 800 and fig.height > 300
    numbers = json.loads(out.with_suffix('.json').read_text())
    assert numbers['radius'] == 0.25
    # 128x171 input: maps of 32x43, 16x22, 8x11 (twice); stage 4's 4x6 is below --min-size
    assert [m['stage'] for m in numbers['mixers']] == [1, 2, 3, 3]
    for mixer in numbers['mixers']:
        hf = mixer['hf_energy']
        assert set(hf) == set(MIXER_MAPS) and all(0 <= v <= 1 for v in hf.values())
        assert hf['mamba'] < hf['residual']
