"""Our TinyViM reproduces the released implementation (fixtures of ../shared)."""
import pytest
import torch
import torch.nn.functional as F

from tinyvim_mm.models import TinyViM
from tinyvim_mm.checkpoint import backbone_state_dict, convert_official

TOL = 1e-4


def classifier_logits(backbone: TinyViM, heads: dict, x: torch.Tensor):
    """Released classifier head: BN'd last stage -> GAP -> head / dist_head."""
    pooled = backbone(x)[-1].mean((2, 3))
    head = F.linear(pooled, heads['head.head.weight'], heads['head.head.bias'])
    dist = F.linear(pooled, heads['head.dist_head.weight'], heads['head.dist_head.bias'])
    return head, dist


def load_classifier(arch: str, synth, fixtures_dir, scan_backend='torch'):
    converted = convert_official(synth.synth_state_dict(fixtures_dir / f'keys_{arch}.json'))
    backbone = TinyViM(arch, out_indices=(3, ), scan_backend=scan_backend)
    backbone.load_state_dict(backbone_state_dict(converted), strict=True)
    return backbone, converted


def test_classifier_matches_released_s(synth, fixtures_dir, reference_s):
    backbone, heads = load_classifier('s', synth, fixtures_dir)
    x = synth.reference_input(tuple(reference_s['input_shape']))
    with torch.no_grad():
        head, dist = classifier_logits(backbone.eval(), heads, x)
        err_eval = ((head + dist) / 2 - reference_s['logits_eval']).abs().max().item()
        # train mode: BatchNorm uses the batch statistics, both heads returned
        head, dist = classifier_logits(backbone.train(), heads, x)
    err_head = (head - reference_s['logits_train_head']).abs().max().item()
    err_dist = (dist - reference_s['logits_train_dist']).abs().max().item()
    print(f'TinyViM-S max abs error: eval {err_eval:.2e}, train head {err_head:.2e}, '
          f'train dist_head {err_dist:.2e}')
    assert err_eval <= TOL and err_head <= TOL and err_dist <= TOL


def test_dense_matches_released_s(synth, fixtures_dir, reference_s):
    model = TinyViM('s', scan_backend='torch')
    model.load_state_dict(synth.synth_state_dict(fixtures_dir / 'keys_s_dense.json'), strict=True)
    x = synth.reference_input(tuple(reference_s['dense_input_shape']))
    with torch.no_grad():
        outs = model.eval()(x)
    assert len(outs) == len(reference_s['dense_feats_every4']) == 4
    for i, (out, ref) in enumerate(zip(outs, reference_s['dense_feats_every4'])):
        err = (out[:, :, ::4, ::4] - ref).abs().max().item()
        print(f'dense stage {i}: max abs error {err:.2e}')
        assert out[:, :, ::4, ::4].shape == ref.shape
        assert err <= TOL


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_released_layouts_load_strictly(arch, synth, fixtures_dir):
    backbone, converted = load_classifier(arch, synth, fixtures_dir)
    assert {k for k in converted if not k.startswith('backbone.')} == {
        'head.head.weight', 'head.head.bias', 'head.dist_head.weight', 'head.dist_head.bias'}
    dense = TinyViM(arch)
    result = dense.load_state_dict(
        synth.synth_state_dict(fixtures_dir / f'keys_{arch}_dense.json'), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_converter_rejects_foreign_state_dict():
    with pytest.raises(ValueError, match='Not a released TinyViM'):
        convert_official({'conv1.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='target'):
        convert_official({'patch_embed.0.c.weight': torch.zeros(1)}, target='detector')


def test_convert_official_tool(synth, fixtures_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    src = tmp_path / 'released.pth'
    torch.save({'model': synth.synth_state_dict(fixtures_dir / 'keys_s.json'), 'epoch': 299}, src)
    for target in ('classifier', 'backbone'):
        dst = tmp_path / f'{target}.pth'
        subprocess.run([sys.executable, str(REPO / 'tools' / 'convert_official.py'), str(src),
                        str(dst), '--target', target], check=True, cwd=REPO)
        state_dict = torch.load(dst, weights_only=True)['state_dict']
        if target == 'backbone':
            result = TinyViM('s').load_state_dict(state_dict, strict=False)
            assert not result.unexpected_keys
            assert {k.split('.')[0] for k in result.missing_keys} == {'norm0', 'norm2', 'norm4',
                                                                     'norm6'}
            assert not any(k.startswith(('head', 'dist_head', 'norm.')) for k in state_dict)
        else:
            assert 'backbone.norm6.weight' in state_dict and 'head.dist_head.bias' in state_dict
