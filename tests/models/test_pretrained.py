"""``init_cfg=dict(type='Pretrained')``: released and toolbox checkpoints."""
import io
import logging

import pytest
import torch
from mmengine.logging import MMLogger

from tinyvim_mm.models import TinyViM
from tinyvim_mm.checkpoint import convert_official


@pytest.fixture(scope='module')
def released_s(synth, fixtures_dir):
    return synth.synth_state_dict(fixtures_dir / 'keys_s.json')


def build(checkpoint, **kwargs) -> TinyViM:
    model = TinyViM(init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)), **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('wrap', ['model', 'state_dict', None])
def test_released_classifier_into_dense_backbone(wrap, released_s, tmp_path):
    path = tmp_path / 'released.pth'
    torch.save({wrap: released_s} if wrap else released_s, path)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model = build(path, arch='s')
    finally:
        logger.removeHandler(handler)
    state = model.state_dict()
    for key, value in released_s.items():
        if key.startswith(('norm.', 'head.', 'dist_head.')):
            continue
        assert torch.equal(state[key], value), key
    # the dense output norms keep their init (weight 1, bias 0)
    assert torch.equal(model.norm6.weight, torch.ones(224))
    assert torch.equal(model.norm0.running_mean, torch.zeros(48))
    log = stream.getvalue()
    assert "skipped classifier-only weights ['dist_head', 'head', 'norm']" in log
    assert "dense output norms kept at init: ['norm0', 'norm2', 'norm4', 'norm6']" in log


def test_toolbox_checkpoint_with_prefix(released_s, tmp_path):
    converted = convert_official(released_s, 'classifier')
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': converted, 'meta': {'epoch': 3}}, path)
    model = build(path, arch='s', out_indices=(3, ))
    assert torch.equal(model.norm6.weight, released_s['norm.weight'])
    det = {f'backbone.{k}': v for k, v in released_s.items() if not k.startswith(('head', 'dist'))}
    det['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': det}, path)
    model = build(path, arch='s', out_indices=(3, ))
    assert torch.equal(model.patch_embed[0].c.weight, released_s['patch_embed.0.c.weight'])


def test_mismatch_errors(released_s, tmp_path):
    path = tmp_path / 's.pth'
    torch.save({'model': released_s}, path)
    with pytest.raises(RuntimeError, match='shape mismatches: .*patch_embed.0.c.weight'):
        build(path, arch='l')
    partial = {k: v for k, v in released_s.items() if not k.startswith('network.6.')}
    torch.save(partial, path)
    with pytest.raises(RuntimeError, match=r'missing keys: \[\'network.6.0'):
        build(path, arch='s')
    torch.save({**released_s, 'network.0.0.extra': torch.zeros(1)}, path)
    with pytest.raises(RuntimeError, match="unexpected keys: \\['network.0.0.extra'\\]"):
        build(path, arch='s')
    torch.save({'backbone.foo': torch.zeros(1)}, path)
    with pytest.raises(KeyError, match="starts with 'neck.'"):
        TinyViM(init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='neck.')).init_weights()
    torch.save({'model': {'patch_embed.0.c.weight': 'not a tensor'}}, path)
    with pytest.raises(TypeError, match='not a tensor'):
        build(path, arch='s')
