"""ForeachExponentialMovingAverage gives MMEngine's ExponentialMovingAverage bit for bit
(weights and buffers, with an update interval; also after the source model's tensors are
replaced, as layout and device conversions replace them, and for a model whose state dict
is not its parameter and buffer tables), and EMAHook builds it from the config."""
import pytest
import torch
from mmengine.config import Config
from mmengine.model import ExponentialMovingAverage

from conftest import REPO
from tinyvim_mm.engine import ForeachExponentialMovingAverage
from tinyvim_mm.models.backbones import TinyViM


@pytest.mark.parametrize('update_buffers, interval', [(True, 1), (False, 2)])
def test_equals_mmengine_ema(update_buffers, interval):
    model = TinyViM(arch='s', out_indices=(3, )).train()
    kwargs = dict(momentum=0.3, interval=interval, update_buffers=update_buffers)
    ours = ForeachExponentialMovingAverage(model, **kwargs)
    reference = ExponentialMovingAverage(model, **kwargs)
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model(torch.randn(2, 3, 64, 64))  # BatchNorm statistics move
        ours.update_parameters(model)
        reference.update_parameters(model)
        for (name, a), b in zip(ours.module.state_dict().items(),
                                reference.module.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f'step {step}: {name}')
    moved = dict(ours.module.named_parameters())['patch_embed.0.c.weight']
    assert not torch.equal(moved, dict(model.named_parameters())['patch_embed.0.c.weight'])


def _replace_tensors(model: torch.nn.Module) -> None:
    """What ``model.to(...)`` does to a module: new ``.data`` for every parameter, new
    buffer tensors in the modules' buffer tables."""
    with torch.no_grad():
        for module in model.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data = p.data.clone()
            for key, b in module._buffers.items():
                if b is not None:
                    module._buffers[key] = b.clone()


class _Renamed(torch.nn.Module):
    """A model whose state-dict names are not its modules' (a state-dict hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        self._register_state_dict_hook(_Renamed._rename)

    @staticmethod
    def _rename(module, state, prefix, local_metadata):
        for key in list(state):
            state[key.replace('inner.', 'body_')] = state.pop(key)


@pytest.mark.parametrize('make', [lambda: TinyViM(arch='s', out_indices=(3, )), _Renamed])
def test_follows_replaced_tensors_and_custom_state_dicts(make):
    model = make().train()
    ours = ForeachExponentialMovingAverage(model, momentum=0.3)
    reference = ExponentialMovingAverage(model, momentum=0.3)
    for step in range(4):
        if step == 2:
            _replace_tensors(model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            for b in model.buffers():
                if b.dtype.is_floating_point:
                    b.add_(torch.rand_like(b))
        ours.update_parameters(model)
        reference.update_parameters(model)
        for (name, a), b in zip(ours.module.state_dict().items(),
                                reference.module.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f'step {step}: {name}')


def test_another_source_model_is_read_from_its_own_tensors():
    first, second = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    ours = ForeachExponentialMovingAverage(first, momentum=0.5)
    reference = ExponentialMovingAverage(first, momentum=0.5)
    for source in (first, first, second, second, first):
        ours.update_parameters(source)
        reference.update_parameters(source)
        for a, b in zip(ours.module.parameters(), reference.module.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_imagenet_config_uses_it():
    cfg = Config.fromfile(str(REPO / 'configs' / 'tinyvim_s_8xb128_in1k.py'))
    ema = next(h for h in cfg.custom_hooks if h['type'] == 'EMAHook')
    assert ema['ema_type'] == 'ForeachExponentialMovingAverage'
    from mmengine.registry import MODELS
    built = MODELS.build(dict(type=ema['ema_type'], momentum=ema['momentum'],
                              update_buffers=True), default_args=dict(model=torch.nn.Linear(2, 2)))
    assert isinstance(built, ForeachExponentialMovingAverage)
    assert built.momentum == ema['momentum']
