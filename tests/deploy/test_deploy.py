"""Reparameterization: the folded model computes what the training form does."""
import copy

import pytest
import torch
import torch.nn as nn

from conftest import randomise_bn
from tinyvim_mm.models import TinyViM, switch_to_deploy
from tinyvim_mm.models.layers import AxialRepDW, ConvBN, RepDW
from tinyvim_mm.checkpoint import backbone_state_dict, convert_official

TOL = 1e-4


@pytest.mark.parametrize('layer,channels', [
    (lambda: ConvBN(8, 16, 3, 2, 1), 8), (lambda: ConvBN(8, 8, 3, 1, 1, groups=8), 8),
    (lambda: RepDW(8), 8), (lambda: RepDW(8, (1, 7)), 8), (lambda: RepDW(8, (7, 1)), 8),
    (lambda: AxialRepDW(9), 9)])
def test_layer_folding(layer, channels):
    module = layer()
    randomise_bn(module)
    module.eval()
    x = torch.randn(2, channels, 11, 13)
    with torch.no_grad():
        expected = module(x)
        switch_to_deploy(module)
        got = module(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_repdw_rejects_even_kernel():
    with pytest.raises(ValueError, match='odd'):
        RepDW(4, (2, 3))


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
@pytest.mark.parametrize('dense', [True, False])
def test_deployed_model_matches(arch, dense, synth, fixtures_dir):
    if dense:
        model = TinyViM(arch, scan_backend='torch')
        model.load_state_dict(synth.synth_state_dict(fixtures_dir / f'keys_{arch}_dense.json'))
    else:
        model = TinyViM(arch, out_indices=(3, ), scan_backend='torch')
        converted = convert_official(synth.synth_state_dict(fixtures_dir / f'keys_{arch}.json'))
        model.load_state_dict(backbone_state_dict(converted))
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    with torch.no_grad():
        expected, got = model(x), deployed(x)
    errors = [(e - g).abs().max().item() for e, g in zip(expected, got)]
    print(f'TinyViM-{arch.upper()} {"dense" if dense else "classifier"} deploy max abs error: '
          f'{max(errors):.2e}')
    assert max(errors) <= TOL
    # only the per-output norms remain as BatchNorm; rep blocks are single convs
    bn_names = {n for n, m in deployed.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert bn_names == {f'norm{2 * i}' for i in model.out_indices}
    assert not any(isinstance(m, (ConvBN, RepDW)) and not m.deploy for m in deployed.modules())
    assert not any('layer_scale' in n for n, _ in deployed.named_parameters())

    # a deploy-built model loads the folded weights
    rebuilt = TinyViM(arch, out_indices=model.out_indices, scan_backend='torch', deploy=True)
    rebuilt.load_state_dict(deployed.state_dict(), strict=True)
    with torch.no_grad():
        again = rebuilt.eval()(x)
    assert all(torch.equal(a, b) for a, b in zip(again, got))
