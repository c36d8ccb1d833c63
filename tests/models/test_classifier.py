"""The plain TinyViMClassifier: shapes, both heads, loading released and mmpretrain
checkpoints (class count and arch read from the checkpoint), clear errors."""
import pytest
import torch

from tinyvim_mm.models import TinyViMClassifier


def test_forward_shapes_and_head_average():
    model = TinyViMClassifier('s', num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    head, dist = model.train()(x)
    assert head.shape == dist.shape == (2, 7)
    model.eval()
    with torch.no_grad():
        pooled = model.backbone(x)[-1].mean((2, 3))
        expected = (model.head.head(pooled) + model.head.dist_head(pooled)) / 2
        assert torch.allclose(model(x), expected)


def test_from_released_checkpoint(tmp_path, synth, fixtures_dir):
    ckpt = tmp_path / 'released.pth'
    state = synth.synth_state_dict(fixtures_dir / 'keys_s.json')
    torch.save({'model': state}, ckpt)
    model = TinyViMClassifier.from_checkpoint(str(ckpt))
    assert not model.training and model.num_classes == state['head.weight'].shape[0]
    assert model.backbone.arch['widths'] == (48, 64, 168, 224)
    assert torch.equal(model.head.head.weight, state['head.weight'])
    assert torch.equal(model.backbone.patch_embed[0].c.weight, state['patch_embed.0.c.weight'])


def test_from_checkpoint_infers_arch_and_classes(tmp_path):
    src = TinyViMClassifier('b', num_classes=10)
    ckpt = tmp_path / 'b.pth'
    torch.save({'state_dict': src.state_dict(), 'meta': {}}, ckpt)
    model = TinyViMClassifier.from_checkpoint(str(ckpt))
    assert model.num_classes == 10 and model.backbone.arch['widths'] == (48, 96, 192, 384)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), src.eval()(x))


def test_from_checkpoint_errors(tmp_path):
    ckpt = tmp_path / 'b.pth'
    torch.save(TinyViMClassifier('b', num_classes=10).state_dict(), ckpt)
    with pytest.raises(ValueError, match="arch 's'.*backbone"):
        TinyViMClassifier.from_checkpoint(str(ckpt), arch='s')
    backbone_only = tmp_path / 'backbone.pth'
    torch.save(TinyViMClassifier('s').backbone.state_dict(), backbone_only)
    with pytest.raises(ValueError, match='no classifier head'):
        TinyViMClassifier.from_checkpoint(str(backbone_only))
    with pytest.raises(ValueError, match='num_classes'):
        TinyViMClassifier('s', num_classes=0)
