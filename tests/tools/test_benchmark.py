"""tools/benchmark.py and tools/benchmark_scan.py on the CPU at tiny sizes: the table, the
JSON and the plot, errors recorded while the run goes on, clear errors for bad input,
tables again from a saved JSON (the former format included), the scan backends side by
side. (The measurements themselves: tests/benchmark.)"""
import json
import sys

import pytest
import torch

from conftest import REPO, load_module

TINY = ['--device', 'cpu', '--dtype', 'fp32', '--batch', '2', '--img-size', '32',
        '--warmup', '0', '--repeats', '1', '--min-time', '0']


@pytest.fixture(scope='module')
def bench():
    return load_module(REPO / 'tools' / 'benchmark.py', 'benchmark_cli')


def test_models_table_json_plot(bench, tmp_path, capsys):
    out, png = tmp_path / 'bench.json', tmp_path / 'bench.png'
    data = bench.main(TINY + ['--models', 'tinyvim-s:fast', 'timm:mobileone_s0',
                              'timm:efficientformer_l1', '--channels-last',
                              '--json', str(out), '--plot', str(png)])
    saved = json.loads(out.read_text())
    assert saved['records'] == json.loads(json.dumps(data['records'], default=str))
    status = {r['label']: r['status'] for r in saved['records']}
    assert status['TinyViM-S fast'] == 'ok' and status['mobileone_s0'] == 'ok'
    # efficientformer_l1's attention biases are fixed to 224x224: recorded, the run went on
    assert status['efficientformer_l1'] == 'error'
    assert saved['top1']['timm:mobileone_s1']['top1'] == 75.76  # the zoo table rides along
    assert saved['sections'][0]['treatment'] == 'fp32, channels-last, folded'
    table = capsys.readouterr().out
    assert '| TinyViM-S fast | 79.2 | fp32, channels-last, folded |' in table
    assert '| efficientformer_l1 | 80.5 | fp32, channels-last, folded | error | — |' in table
    assert png.stat().st_size > 0
    # the tables and the plot again, from the JSON alone
    again = bench.main(['--from-json', str(out), '--plot', str(tmp_path / 'again.png')])
    assert again['records'] == saved['records']
    assert table.split('Environment')[1] in capsys.readouterr().out


def test_part_of_a_preset(bench, tmp_path):
    """--only / --columns run part of a preset file: the matching rows and the table's
    reference row, the named column; the JSON says what was selected."""
    preset, out = tmp_path / 'tiny.py', tmp_path / 'part.json'
    preset.write_text(
        "sections = [dict(kind='throughput', title='tiny', batch=2, img_size=32,\n"
        "    models=['tinyvim-s:fast', 'timm:mobileone_s0', 'timm:repvit_m1_1'],\n"
        "    treatment=dict(dtype='fp32'), timing=dict(warmup=0, repeats=1, min_time=0),\n"
        "    columns=[dict(name='eager'), dict(name='channels-last', channels_last=True)])]\n")
    data = bench.main(['--preset', str(preset), '--only', 'MobileOne', '--columns',
                       'channels-last', '--device', 'cpu', '--json', str(out)])
    assert [(r['label'], r['column']) for r in data['records']] == [
        ('TinyViM-S fast', 'channels-last'), ('mobileone_s0', 'channels-last')]
    saved = json.loads(out.read_text())
    assert saved['only'] == ['MobileOne'] and saved['columns'] == ['channels-last']

def test_former_json_is_readable(bench, capsys):
    """docs/benchmark_h100.json (written by the former tool) still prints as a table."""
    data = bench.main(['--from-json', str(REPO / 'docs' / 'benchmark_h100.json')])
    assert data['sections'][0]['kind'] == 'throughput'
    text = capsys.readouterr().out
    assert 'NVIDIA H100 80GB HBM3' in text and '| tinyvim-s train fp16 | — |' in text



def test_plot_labels_do_not_overlap():
    """Models of close speed and top-1 (the README run's TinyViM-S and efficientvit_b1,
    mambaout_tiny and fastvit_sa24) get labels whose boxes overlap neither each other nor
    the legend; at the first offset tried, the first two pairs would."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from tinyvim_mm.benchmark import report
    anchors = [('TinyViM-S fast', 41036, 79.2), ('efficientvit_b1', 37005, 79.3),
               ('mambaout_tiny', 5819, 82.7), ('fastvit_sa24', 7892, 82.7),
               ('efficientformerv2_l', 420, 83.6), ('mobileone_s1', 50966, 75.8)]
    fig, ax = plt.subplots(figsize=(8, 6))
    for _, speed, top1 in anchors:
        ax.plot(speed, top1, 'o')
    ax.plot([], [], 'o', label='eager')
    ax.set_xscale('log')
    ax.set_xlim(300, 9e4)
    ax.legend(loc='lower left')
    colours = {label: 'k' for label, _, _ in anchors}
    report._place_labels(fig, ax, anchors, colours)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == sorted(a[0] for a in anchors)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(box.overlaps(legend) for box in boxes)
    # the same labels all at the first offset do collide: the test can fail
    first = [ax.annotate(label, (speed, top1), xytext=report._LABEL_OFFSETS[0][:2],
                         textcoords='offset points', fontsize=7).get_window_extent(renderer)
             for label, speed, top1 in anchors]
    assert any(a.overlaps(b) for i, a in enumerate(first) for b in first[i + 1:])
    plt.close(fig)

@pytest.mark.parametrize('argv, message', [
    (['--preset', 'nope'], "unknown preset 'nope'; available: "),
    (['--models', 'timm:no_such_net'], "unknown timm model 'no_such_net'"),
    (['--models', 'tinyvim-s', '--reference', 'tinyvim-b'], 'reference .tinyvim-b.'),
    (['--models', 'tinyvim-s', '--only', 'tinyvim'], '--only and --columns select from a --preset'),
    (['--preset', 'readme', '--columns', 'fast'], r"no column named \['fast'\]"),
])
def test_bad_input_exits_with_a_message(bench, argv, message):
    with pytest.raises(SystemExit, match=message):
        bench.main(argv + ['--device', 'cpu'])


def test_list_presets(bench, capsys):
    bench.main(['--list-presets'])
    assert {'peers_s', 'peers_b', 'peers_l', 'latency', 'dense', 'train', 'readme'} <= set(
        capsys.readouterr().out.split())


def test_benchmark_scan(tmp_path, monkeypatch, capsys):
    scan = load_module(REPO / 'tools' / 'benchmark_scan.py', 'benchmark_scan_cli')
    out = tmp_path / 'scan.json'
    monkeypatch.setattr(sys, 'argv', ['benchmark_scan.py', '--grid', '3', '4', '-d', '4',
                                      '--repeats', '1', '--warmup', '0', '--chunk-size', '4',
                                      '6', '--json', str(out)])
    scan.main()
    text = capsys.readouterr().out
    for row in ('| ref |', '| torch (chunk 4) |', '| torch (chunk 6) |',
                '| cuda | unavailable: needs a CUDA device', '| triton | unavailable'):
        assert row in text
    assert 'fused Triton cross scan' in text and 'needs a CUDA device' in text
    saved = json.loads(out.read_text())
    assert saved['results']['torch (chunk 4)']['max_abs_diff_out'] < 1e-5
    assert saved['results']['torch (chunk 4)']['max_abs_diff_grad'] < 1e-4


def test_benchmark_scan_model_steps(tmp_path, monkeypatch, capsys):
    """``--model``: training steps of one classifier, its scan backend switched between
    interleaved rounds (every backend really runs), a row each; bad arguments error."""
    from tinyvim_mm.models.layers import laplace_mixer
    scan = load_module(REPO / 'tools' / 'benchmark_scan.py', 'benchmark_scan_cli')
    used = []
    real = laplace_mixer.selective_scan
    monkeypatch.setattr(laplace_mixer, 'selective_scan',
                        lambda *a, backend, **k: used.append(backend) or real(*a, backend=backend,
                                                                             **k))
    out = tmp_path / 'steps.json'
    monkeypatch.setattr(sys, 'argv', ['benchmark_scan.py', '--model', 's', '--batch', '1',
                                      '--img-size', '64', '--backends', 'torch', 'ref',
                                      '--rounds', '2', '--steps', '1', '--warmup', '0',
                                      '--json', str(out)])
    scan.main()
    assert '| torch |' in capsys.readouterr().out
    saved = json.loads(out.read_text())['model_steps']
    assert list(saved) == ['torch', 'ref'] and saved['torch']['speed'] == 1.0
    assert saved['ref']['img_per_s'] > 0
    # 3 warm-up and 2 timed steps per backend, in turns: torch, ref | ref, torch
    blocks = [b for i, b in enumerate(used) if i == 0 or used[i - 1] != b]
    assert blocks == ['torch', 'ref', 'torch', 'ref', 'torch'], blocks
    assert used.count('torch') == used.count('ref')
    for argv in (['--amp'], ['--compile']):  # only with --model
        monkeypatch.setattr(sys, 'argv', ['benchmark_scan.py', *argv])
        with pytest.raises(SystemExit):
            scan.main()


def test_model_steps_compiled_backbone(monkeypatch):
    """``compile``: the classifier's backbone (only) is compiled with those arguments, and
    every backend's steps run through it."""
    from tinyvim_mm.benchmark.scan import model_steps_by_backend
    from tinyvim_mm.models.backbones import TinyViM
    compiled = []
    real = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, **kw: compiled.append(
        (type(self), kw)) or real(self, **kw))
    results = model_steps_by_backend('s', 2, 64, ['torch', 'ref'], torch.device('cpu'),
                                     rounds=1, steps=1, warmup=1,
                                     compile=dict(backend='eager'))
    assert compiled == [(TinyViM, dict(backend='eager'))]
    assert set(results) == {'torch', 'ref'} and all(r['img_per_s'] > 0
                                                    for r in results.values())


def test_profile_kernels(tmp_path, capsys):
    """The profile tool on the CPU: operator time by category adds up, the scan is found,
    a toolbox config is profiled as its backbone (mmdet's ResNet too), bad input errors."""
    tool = load_module(REPO / 'tools' / 'profile_kernels.py', 'profile_kernels_cli')
    out = tmp_path / 'p.json'
    result = tool.main(['tinyvim-s', '--img-size', '64', '--repeats', '1', '--json', str(out)])
    assert result['total_ms'] > 0 and abs(sum(c['share'] for c in result['categories']) - 1) < 1e-6
    assert 'scan' in {c['category'] for c in result['categories']}
    assert json.loads(out.read_text())['what'].startswith('forward, 1x3x64x64, fp32')
    assert '| category |' in capsys.readouterr().out
    result = tool.main(['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '--img-size', '64',
                        '--repeats', '1'])
    assert 'scan' not in {c['category'] for c in result['categories']}
    backward = tool.main(['tinyvim-s', '--backward', '--scan-backend', 'ref', '--batch', '2',
                          '--img-size', '64', '--repeats', '1'])
    assert backward['what'].startswith('forward + backward') and 'folded' not in backward['what']
    compiled = tool.main(['tinyvim-s', '--fast', '--compile', '--compile-backend', 'eager',
                          '--img-size', '64', '--repeats', '1'])
    assert compiled['what'].endswith('compiled') and compiled['total_ms'] > 0
    with pytest.raises(SystemExit, match='--compile profiles inference'):
        tool.main(['tinyvim-s', '--compile', '--backward'])
    with pytest.raises(SystemExit, match='TinyViM'):
        tool.main(['timm:resnet18', '--fast'])
    with pytest.raises(ValueError, match='backend'):
        tool.main(['tinyvim-s', '--scan-backend', 'fastest', '--repeats', '1'])


def test_kernel_categories():
    """Kernel names fall into the profile's categories; inductor's fused kernels form one,
    whatever ops their names list."""
    from tinyvim_mm.benchmark.profile import categorise
    assert categorise('triton_poi_fused__native_batch_norm_legit_no_training_add_0') == \
        'compiled (inductor)'
    assert categorise('triton_red_fused_convolution_gelu_mean_3') == 'compiled (inductor)'
    assert categorise('_cross_scan_fwd_kernel') == 'scan'
    assert categorise('sm90_xmma_fprop_implicit_gemm_f16f16') == 'convolution'
    assert categorise('vectorized_elementwise_kernel') == 'elementwise'
    assert categorise('some_kernel') == 'other'


def test_profile_runner_loop(tmp_path, capsys):
    """--runner profiles a config's training loop through the Runner: operator time by
    category, the host functions (the optimizer step among them, its calls counted per
    iteration; with --pstats all of them in a file), the unprofiled iteration time; bad
    combinations error."""
    import pstats
    tool = load_module(REPO / 'tools' / 'profile_kernels.py', 'profile_kernels_cli')
    out, stats = tmp_path / 'runner.json', tmp_path / 'host.pstats'
    result = tool.main(['configs/tinyvim_s_toy_imagenet.py', '--runner', '--batch', '2',
                        '--img-size', '32', '--repeats', '2', '--json', str(out),
                        '--pstats', str(stats)])
    steps = [v for k, v in pstats.Stats(str(stats)).stats.items() if k[2] == 'train_step']
    assert len(steps) == 1 and steps[0][1] == 2  # the two profiled iterations
    assert abs(sum(c['share'] for c in result['categories']) - 1) < 1e-6
    assert result['repeats'] == 2 and result['wall_ms'] > 0
    host = {row['function'].split(' (')[0]: row for row in result['host']}
    assert host['train_step']['calls'] == 1 and host['train_step']['ms'] <= result['wall_ms']
    assert 'backward' in host
    assert result['run']['batch'] == 2 and result['run']['img_size'] == [32, 32]
    assert json.loads(out.read_text())['what'].startswith('training loop (Runner), batch 2')
    assert '| host function |' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='config'):
        tool.main(['tinyvim-s', '--runner'])
    with pytest.raises(SystemExit, match='add --runner'):
        tool.main(['tinyvim-s', '--pstats', str(stats)])
    with pytest.raises(SystemExit, match='--cfg-options'):
        tool.main(['configs/tinyvim_s_toy_imagenet.py', '--runner', '--scan-backend', 'torch'])


def test_benchmark_agc(capsys):
    """tools/misc/benchmark_agc.py: the three AGC variants side by side, a row each."""
    tool = load_module(REPO / 'tools' / 'misc' / 'benchmark_agc.py', 'benchmark_agc')
    times = tool.main(['--host-only', '--calls', '2'])
    assert [len(v) for v in times.values()] == [2, 2, 2]
    table = capsys.readouterr().out
    assert 'one row each' in table and '| AdaptiveGradClipper (plan kept) |' in table
    with pytest.raises(SystemExit):
        tool.main(['--calls', '0'])



def test_benchmark_teacher(tmp_path, capsys):
    """tools/misc/benchmark_teacher.py: the teacher through ``teacher_logits`` for each
    teacher_fast setting asked for, a row each, with its labels' agreement with fp32 (on
    the CPU every setting runs the plain teacher: full agreement); a checkpoint is loaded
    strictly; unknown variants are refused."""
    import timm
    tool = load_module(REPO / 'tools' / 'misc' / 'benchmark_teacher.py', 'benchmark_teacher')
    ckpt = tmp_path / 'teacher.pth'
    torch.save(timm.create_model('resnet18', num_classes=3).state_dict(), ckpt)
    out = tmp_path / 'teacher.json'
    results = tool.main(['--model', 'resnet18', '--num-classes', '3', '--batch', '2',
                         '--img-size', '32', '--calls', '2', '--warmup', '1', '--checkpoint',
                         str(ckpt), '--variants', 'fp32', 'default', '--json', str(out)])
    assert list(results) == ['fp32', 'default']
    assert results['default']['teacher_fast'] == tool.VARIANTS['default']
    assert all(r['ms'] >= r['min_ms'] > 0 and r['agreement'] == 1.0 for r in results.values())
    assert '| default |' in capsys.readouterr().out
    assert json.loads(out.read_text())['results']['fp32']['teacher_fast'] is None
    with pytest.raises(SystemExit):
        tool.main(['--variants', 'fp8'])
    torch.save(timm.create_model('resnet18', num_classes=4).state_dict(), ckpt)
    with pytest.raises(RuntimeError, match='does not fit'):
        tool.main(['--model', 'resnet18', '--num-classes', '3', '--checkpoint', str(ckpt),
                   '--variants', 'fp32'])
