"""MergedGroupsOptimWrapperConstructor: the ImageNet config's paramwise_cfg in a few
parameter groups, each parameter with the settings MMEngine's per-parameter groups give
it, and the same AdamW updates."""
import copy

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from conftest import REPO
from tinyvim_mm.engine import merge_param_groups
from tinyvim_mm.engine.optim_constructor import MULTIPLIERS
from tinyvim_mm.models.backbones import TinyViM


def _settings(wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: {k: v for k, v in g.items() if k not in ('params', *MULTIPLIERS)}
            for g in wrapper.optimizer.param_groups for p in g['params']}


def test_merged_groups_match_mmengine_per_parameter_groups():
    cfg = Config.fromfile(str(REPO / 'configs' / 'tinyvim_s_8xb128_in1k.py'))
    assert cfg.optim_wrapper.constructor == 'MergedGroupsOptimWrapperConstructor'
    model = TinyViM(arch='s', out_indices=(3, ))
    plain_cfg = copy.deepcopy(cfg.optim_wrapper)
    plain_cfg.pop('constructor')
    plain = build_optim_wrapper(model, plain_cfg)
    merged = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    n_params = len(list(model.parameters()))
    assert len(plain.optimizer.param_groups) == n_params  # MMEngine: one per parameter
    assert len(merged.optimizer.param_groups) == 2  # with and without weight decay
    assert _settings(merged, model) == _settings(plain, model)
    assert {g['weight_decay'] for g in merged.optimizer.param_groups} == {0.0, 0.025}

    # the same AdamW step
    twin = copy.deepcopy(model)
    plain = build_optim_wrapper(twin, plain_cfg)
    for net in (model, twin):
        for p in net.parameters():
            p.grad = torch.randn_like(p, generator=torch.Generator().manual_seed(p.numel()))
    merged.optimizer.step()
    plain.optimizer.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_merge_keeps_order_and_distinct_settings():
    a, b, c, d = (torch.nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [dict(params=[a], lr=1.0), dict(params=[b], lr=2.0), dict(params=[c], lr=1.0),
              dict(params=[d], lr=1.0, betas=(0.9, 0.99))]
    merged = merge_param_groups(groups)
    assert [[id(p) for p in g['params']] for g in merged] == [[id(a), id(c)], [id(b)], [id(d)]]
    assert [g['lr'] for g in merged] == [1.0, 2.0, 1.0] and merged[2]['betas'] == (0.9, 0.99)
    # a setting left out equals the optimizer's default given
    groups = [dict(params=[a]), dict(params=[b], lr=1.0), dict(params=[c], lr=2.0)]
    assert [len(g['params']) for g in merge_param_groups(groups, dict(lr=1.0))] == [2, 1]
    assert len(merge_param_groups(groups)) == 3
