"""``tools/benchmark.py`` on the CPU: tiny batches, float32, the JSON and plot,
error isolation, and the README preset's control flow (measurements stubbed)."""
import json
import time

import pytest

from conftest import REPO, load_module

FAST = ['--device', 'cpu', '--dtype', 'fp32', '--batch-size', '2', '--img-size', '32',
        '--warmup', '0', '--repeats', '1', '--min-time', '0']


@pytest.fixture(scope='module')
def bench():
    return load_module(REPO / 'tools' / 'benchmark.py', 'benchmark')


def test_inference_forms_and_peer(bench, tmp_path):
    out = tmp_path / 'bench.json'
    bench.main(FAST + ['--arch', 's', '--form', 'train', 'deploy', '--scan-backend', 'triton',
                       '--fuse-blocks', '--compare', '--peers', 'resnet18', 'no_such_model',
                       '--json', str(out), '--plot', str(tmp_path / 'bench.png')])
    data = json.loads(out.read_text())
    rows = {r['label']: r for r in data['results']}
    assert list(rows) == [
        'tinyvim-s train fp32 scan:triton fused<=128', 'tinyvim-s deploy fp32 scan:triton fused<=128',
        'timm:resnet18 train fp32', 'timm:no_such_model train fp32']
    for label, r in rows.items():
        if 'no_such_model' in label:  # recorded, and the run went on
            assert r['status'] == 'error' and 'no_such_model' in r['error']
            continue
        assert r['status'] == 'ok' and r['img_per_s'] > 0 and r['batch'] == 2, label
    # the folded model computes the training form's logits (float32)
    assert rows['tinyvim-s train fp32 scan:triton fused<=128']['max_abs_diff'] == 0
    assert rows['tinyvim-s deploy fp32 scan:triton fused<=128']['max_abs_diff'] < 1e-4
    assert data['env']['triton_scan'].startswith('tensors on cpu')
    assert (tmp_path / 'bench.png').stat().st_size > 0


def test_config_classifier(bench):
    """A classifier config builds without its distillation teacher; its deploy
    form gives the training form's logits."""
    import torch
    args = bench.parse_args(FAST)
    runner = bench.Runner(args)
    config = 'configs/tinyvim_s_8xb128_in1k.py'
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = [runner.build(bench.Variant(config, form=form))[0](x) for form in ('train', 'deploy')]
    assert logits[0].shape == (2, 1000)
    assert (logits[0] - logits[1]).abs().max() < 1e-4


def test_train_step(bench, tmp_path):
    out = tmp_path / 'train.json'
    bench.main(FAST + ['--train-step', '--arch', 's', '--channels-last', '--fused-adamw',
                       '--json', str(out)])
    (row, ) = json.loads(out.read_text())['results']
    assert row['status'] == 'ok' and row['variant']['mode'] == 'train-step'
    assert row['img_per_s'] > 0 and row['first_loss'] == pytest.approx(6.9, abs=1.0)


def test_readme_preset_flow(bench, tmp_path, monkeypatch):
    """The preset with stubbed measurements: which variants run, how the best
    deploy flags propagate to B and L, the ratios and targets, a failing and a
    skipped variant."""

    def fake(self, v):
        if v.model == 'timm:fastvit_t12':
            raise RuntimeError('boom')
        speed = {'s': 1000.0, 'b': 800.0, 'l': 500.0}.get(v.model[-1], 900.0)
        if v.model.startswith('timm:'):
            speed = 1500.0
        if v.form == 'deploy':
            speed *= 1.5 + v.channels_last + 0.3 * v.fuse_blocks + 0.1 * v.fold_axial
        speed *= 1.4 if v.compile else 1.0
        memory = 10.0 - 2 * bool(v.compile)
        return dict(batch=v.batch, img_per_s=speed, ms_per_iter=1e3 * v.batch / speed,
                    peak_mem_gb=memory)

    monkeypatch.setattr(bench.Runner, '_dispatch', fake)
    out = tmp_path / 'preset.json'
    runner = bench.main(['--preset', 'readme', '--device', 'cpu', '--json', str(out)])
    data = json.loads(out.read_text())
    labels = [r['label'] for r in data['results']]
    assert labels[:3] == ['tinyvim-s train fp16', 'tinyvim-b train fp16', 'tinyvim-l train fp16']
    best = 'deploy fp16 cl compile:default scan:triton fused<=128 axial7x7 half-w'
    assert data['ratios']['best_deploy_label'] == {a: f'tinyvim-{a} {best}' for a in 'sbl'}
    assert data['ratios']['deploy_vs_train_fp16']['s'] == pytest.approx(1.4 * 2.9, rel=1e-3)
    assert data['ratios']['targets']['deploy_2x'] == {'s': True, 'b': True, 'l': True}
    assert data['ratios']['tinyvim_s_vs_peers']['fastvit_t12'] is None
    assert [r['status'] for r in data['results'] if 'fastvit' in r['label']] == ['error']
    assert data['ratios']['train_step']['speedup'] == pytest.approx(1.4)
    assert data['ratios']['targets']['train_mem_not_higher']
    assert data['ratios']['det_tinyvim_b_vs_r50'] == pytest.approx(1.5)  # deploy vs train
    assert any('train-step' in label and 'compile' in label for label in labels)
    assert sum('det' in r['variant']['mode'] for r in data['results']) == 2
    assert runner.ratios == data['ratios']

    def slow(self, v):
        time.sleep(0.3)
        return fake(self, v)

    monkeypatch.setattr(bench.Runner, '_dispatch', slow)
    runner = bench.main(['--preset', 'readme', '--device', 'cpu', '--time-budget', '16',
                         '--skip-compile', '--skip-dense'])
    statuses = [r['status'] for r in runner.results]
    assert statuses[0] == 'ok' and statuses[-1].startswith('skipped')
