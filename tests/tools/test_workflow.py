"""The OpenMMLab workflow from the outside: launch scripts (usage errors, the commands they
run), two-process training over gloo on CPU, tools/train.py's options, mim search / train /
test, and a downstream config inheriting ``tinyvim_mm::...`` from a folder outside the
repository."""
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

from conftest import REPO, load_module, tiny_seg_config
from tinyvim_mm.datasets import make_toy_ade

TOOLS = REPO / 'tools'
LAUNCHERS = {  # script: its positional arguments
    'dist_train.sh': ['CONFIG', '2'],
    'dist_test.sh': ['CONFIG', 'ckpt.pth', '2'],
    'slurm_train.sh': ['gpu', 'job', 'CONFIG', 'work_dir'],
    'slurm_test.sh': ['gpu', 'job', 'CONFIG', 'ckpt.pth'],
}
#: the downstream config's base: our flat configs, through the package
BASE = 'tinyvim_mm::fpn_tinyvim_s_toy_ade.py'
requires_mim = pytest.mark.skipif(
    shutil.which('mim') is None or importlib.util.find_spec('mim') is None,
    reason='openmim not installed (tools/install.sh installs it)')
HAS_TENSORBOARD = importlib.util.find_spec('tensorboard') is not None


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment of a user outside the repository: no PYTHONPATH, one thread."""
    launch_vars = ('PYTHONPATH', 'DRY_RUN', 'PYTHON', 'NNODES', 'NODE_RANK', 'MASTER_ADDR',
                   'PORT', 'GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS')
    env = {k: v for k, v in os.environ.items() if k not in launch_vars}
    env.update(OMP_NUM_THREADS='1', **extra)
    return env


def sh(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
       timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def downstream(tmp_path_factory) -> Path:
    """A project folder outside the repository with toy ADE data and a config that
    inherits ours through ``tinyvim_mm::`` and overrides a few fields."""
    root = tmp_path_factory.mktemp('project')
    ade = make_toy_ade(root / 'data' / 'ade', num_train=4, num_val=2).root
    tiny_seg_config(root / 'my_fpn.py', Path(ade), max_iters=2, base=BASE)
    return root


# ----------------------------------------------------------------------- launch scripts
@pytest.mark.parametrize('script', sorted(LAUNCHERS))
def test_launcher_usage_errors(script, tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    args = [str(config) if a == 'CONFIG' else a for a in LAUNCHERS[script]]
    missing = [str(tmp_path / 'nope.py') if a == str(config) else a for a in args]
    cases = [([], {}, 'usage:'), (args[:-1], {}, 'usage:'), (missing, {}, 'not found')]
    if script.startswith('dist'):
        cases.append(([*args[:-1], 'two'], {}, 'GPUS must be a positive integer'))
    else:
        cases.append((args, dict(GPUS='0'), 'GPUS must be a positive integer'))
    for argv, env, message in cases:
        result = sh(['bash', str(TOOLS / script), *argv], tmp_path, clean_env(DRY_RUN='1', **env))
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert message in result.stderr and result.stdout == '', (argv, result.stderr)


def fake_bin(tmp_path: Path, *names: str) -> Dict[str, str]:
    """Fake ``python`` / ``srun`` first on PATH: they write their argv as JSON."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name in names:
        exe = bin_dir / name
        exe.write_text(f'#!{sys.executable}\nimport json, os, sys\n'
                       f'json.dump(dict(argv=sys.argv[1:], PYTHONPATH=os.environ["PYTHONPATH"]),'
                       f' open({str(tmp_path / (name + ".json"))!r}, "w"))\n')
        exe.chmod(0o755)
    return clean_env(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')


def test_dist_scripts_run_torchrun(tmp_path):
    config = tmp_path / 'my cfg.py'
    config.write_text('x = 1\n')
    env = fake_bin(tmp_path, 'python')
    env.update(NNODES='2', NODE_RANK='1', MASTER_ADDR='10.1.2.3', PORT='29999')
    check(sh(['bash', str(TOOLS / 'dist_train.sh'), str(config), '4', '--amp',
              '--cfg-options', 'a=1 b'], tmp_path, env))
    call = json.loads((tmp_path / 'python.json').read_text())
    assert call['argv'] == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
        '--master_addr=10.1.2.3', '--nproc_per_node=4', '--master_port=29999',
        str(TOOLS / 'train.py'), str(config), '--launcher', 'pytorch', '--amp',
        '--cfg-options', 'a=1 b']
    assert call['PYTHONPATH'].split(os.pathsep)[0] == str(TOOLS / '..')

    check(sh(['bash', str(TOOLS / 'dist_test.sh'), str(config), 'c.pth', '1', '--tta'],
             tmp_path, clean_env(PATH=env['PATH'])))
    argv = json.loads((tmp_path / 'python.json').read_text())['argv']
    assert argv[:7] == ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
                        '--master_addr=127.0.0.1', '--nproc_per_node=1', '--master_port=29500']
    assert argv[7:] == [str(TOOLS / 'test.py'), str(config), 'c.pth', '--launcher',
                        'pytorch', '--tta']
    dry = sh(['bash', str(TOOLS / 'dist_train.sh'), str(config), '2'], tmp_path,
             clean_env(DRY_RUN='1', PYTHON='/opt/py/bin/python3'))
    assert check(dry).startswith('/opt/py/bin/python3 -m torch.distributed.run ')
    assert not (tmp_path / 'work_dirs').exists()


def test_slurm_scripts_run_srun(tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    env = fake_bin(tmp_path, 'srun')
    env.update(GPUS='16', CPUS_PER_TASK='3', SRUN_ARGS='--quotatype=auto -x node1')
    check(sh(['bash', str(TOOLS / 'slurm_train.sh'), 'gpu', 'det', str(config), 'wd',
              '--resume'], tmp_path, env))
    argv = json.loads((tmp_path / 'srun.json').read_text())['argv']
    assert argv == ['-p', 'gpu', '--job-name=det', '--gres=gpu:8', '--ntasks=16',
                    '--ntasks-per-node=8', '--cpus-per-task=3', '--kill-on-bad-exit=1',
                    '--quotatype=auto', '-x', 'node1', 'python', '-u', str(TOOLS / 'train.py'),
                    str(config), '--work-dir=wd', '--launcher=slurm', '--resume']
    env = clean_env(PATH=env['PATH'], GPUS='2')
    check(sh(['bash', str(TOOLS / 'slurm_test.sh'), 'gpu', 'seg', str(config), 'c.pth'],
             tmp_path, env))
    argv = json.loads((tmp_path / 'srun.json').read_text())['argv']
    assert argv == ['-p', 'gpu', '--job-name=seg', '--gres=gpu:2', '--ntasks=2',
                    '--ntasks-per-node=2', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                    'python', '-u', str(TOOLS / 'test.py'), str(config), 'c.pth',
                    '--launcher=slurm']


def test_dist_2gpu_experiment_script():
    """tools/experiments/dist_2gpu.sh (run on 2 GPUs by hand; its CPU form takes minutes)."""
    script = TOOLS / 'experiments' / 'dist_2gpu.sh'
    check(sh(['bash', '-n', str(script)], REPO))
    text = script.read_text()
    assert 'export NCCL_NVLS_ENABLE=0' in text and 'set -euo pipefail' in text
    assert 'bash tools/dist_train.sh "$CONFIG" "$GPUS"' in text
    assert 'bash tools/dist_test.sh "$CONFIG" "$CKPT" "$GPUS"' in text


def test_python_tools_usage():
    for tool in ('train.py', 'test.py'):
        result = sh([sys.executable, str(TOOLS / tool)], REPO)
        assert result.returncode == 2 and 'usage:' in result.stderr
        assert '--launcher {none,pytorch,slurm,mpi}' in check(
            sh([sys.executable, str(TOOLS / tool), '-h'], REPO))


def test_train_tool_options(tmp_path):
    """tools/train.py's command line on a config (no runner built)."""
    from mmengine.config import Config
    tool = load_module(TOOLS / 'train.py', 'tinyvim_train_cli')

    def merged(*argv: str, **cfg) -> Config:
        args = tool.parse_args(['configs/x.py', *argv])
        base = dict(optim_wrapper=dict(type='OptimWrapper'), visualizer=dict(
            type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]))
        return tool.merge_args(Config(dict(base, **cfg)), args)

    cfg = merged()
    assert cfg.work_dir == './work_dirs/x' and cfg.launcher == 'none' and not cfg.get('resume')
    assert cfg.custom_hooks == [dict(type='CheckpointGuardHook')]
    cfg = merged('--amp', '--work-dir', 'w', '--tensorboard', '--resume', '--cfg-options',
                 'optim_wrapper.type=AGCOptimWrapper')
    assert cfg.optim_wrapper == dict(type='AmpAGCOptimWrapper', loss_scale='dynamic')
    assert cfg.work_dir == 'w' and cfg.resume is True and cfg.load_from is None
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend',
                                                               'TensorboardVisBackend']
    cfg = merged('--resume', 'a.pth', custom_hooks=[dict(type='CheckpointGuardHook')])
    assert cfg.resume is True and cfg.load_from == 'a.pth' and len(cfg.custom_hooks) == 1
    assert merged('--auto-scale-lr', auto_scale_lr=dict(enable=False, base_batch_size=16)) \
        .auto_scale_lr.enable is True
    with pytest.raises(RuntimeError, match='auto_scale_lr'):
        merged('--auto-scale-lr')
    with pytest.raises(RuntimeError, match="no mixed-precision version 'AmpFooWrapper'"):
        merged('--amp', '--cfg-options', 'optim_wrapper.type=FooWrapper')


def test_test_tool_deploy_options():
    """tools/test.py --deploy adds the inference-form hook with CUDA graphs, which
    --no-cuda-graphs turns off; --no-cuda-graphs alone is refused."""
    from mmengine.config import Config
    tool = load_module(TOOLS / 'test.py', 'tinyvim_test_cli')

    def hooks(*argv: str) -> list:
        args = tool.parse_args(['configs/x.py', 'ckpt.pth', *argv])
        return tool.merge_args(Config(dict(default_scope='mmpretrain')), args).custom_hooks

    assert [h['type'] for h in hooks()] == ['CheckpointGuardHook']
    assert hooks('--deploy')[-1] == dict(type='InferenceFormHook', cuda_graphs=True)
    assert hooks('--deploy', '--no-cuda-graphs')[-1] == dict(type='InferenceFormHook',
                                                             cuda_graphs=False)
    with pytest.raises(ValueError, match='--no-cuda-graphs applies to --deploy'):
        hooks('--no-cuda-graphs')


# ------------------------------------------------------------ two processes over gloo
def test_dist_train_two_cpu_processes(downstream):
    """tools/dist_train.sh CONFIG 2 on CPU: torchrun, 2 ranks over gloo, DDP."""
    work = downstream / 'work_dist'
    log = check(sh(['bash', str(TOOLS / 'dist_train.sh'), 'my_fpn.py', '2', '--work-dir',
                    str(work), '--cfg-options', 'train_cfg.val_begin=3'], downstream,
                   clean_env(PORT=str(free_port()))))
    assert 'No CUDA: distributed on CPU over gloo' in log
    assert 'GPU number: 2' in log and 'Iter(train) [2/2]' in log
    assert (work / 'iter_2.pth').is_file()


# ------------------------------------------------------------------------------ mim
def test_metafile_lists_every_config():
    index = yaml.safe_load((REPO / 'model-index.yml').read_text())
    models = [m for path in index['Import']
              for m in yaml.safe_load((REPO / path).read_text())['Models']]
    configs = {m['Config'] for m in models}
    assert configs == {f'configs/{p.relative_to(REPO / "configs").as_posix()}'
                       for p in (REPO / 'configs').rglob('*.py') if 'benchmark' not in p.parts}
    assert len(configs) == len(models) and all(m['Name'] == Path(m['Config']).stem
                                               for m in models)
    top1 = {m['Name']: r['Metrics']['Top 1 Accuracy']
            for m in models for r in m.get('Results') or []
            if 'Top 1 Accuracy' in (r.get('Metrics') or {})}
    assert top1 == {'tinyvim_s_8xb128_in1k': 79.2, 'tinyvim_b_8xb128_in1k': 81.2,
                    'tinyvim_l_8xb128_in1k': 83.3}


@requires_mim
def test_mim_search(tmp_path):
    """Plain ``mim search`` (no wrapper) from outside the checkout finds every config."""
    out = check(sh(['mim', 'search', 'tinyvim_mm'], tmp_path))
    for config in (REPO / 'configs').glob('*.py'):
        assert f'config id: {config.stem}\n' in out
    assert '83.3' in out


@requires_mim
def test_mim_train_and_test_downstream(downstream):
    """mim train / mim test of a config outside the repository that inherits
    ``tinyvim_mm::fpn_tinyvim_s_toy_ade.py``; logs with ETA/lr/losses, TensorBoard."""
    work = downstream / 'work_mim'
    tensorboard = ['--tensorboard'] if HAS_TENSORBOARD else []
    log = check(sh(['mim', 'train', 'tinyvim_mm', 'my_fpn.py', '--launcher', 'none',
                    '--work-dir', str(work), *tensorboard, '--cfg-options',
                    'train_cfg.val_interval=2'], downstream))
    assert '.mim/tools/train.py' in log  # mim found our train script
    for needle in ('Iter(train) [2/2]', 'eta:', 'lr:', 'loss:', 'decode.loss_ce:',
                   'per class results', 'mIoU:', 'Saving checkpoint at 2 iterations'):
        assert needle in log, needle
    if HAS_TENSORBOARD:
        assert list(work.glob('*/vis_data/events.out.tfevents.*')), 'no TensorBoard events'
    assert list(work.glob('*/vis_data/scalars.json'))

    log = check(sh(['mim', 'test', 'tinyvim_mm', 'my_fpn.py', '--checkpoint', str(work / 'iter_2.pth'), '--launcher',
                    'none', '--work-dir', str(work / 'test'), '--out', 'pred',
                    '--show-dir', 'vis'], downstream))
    assert 'mIoU' in log and 'per class results' in log
    assert len(list((downstream / 'pred').glob('*.png'))) == 2
    assert len(list((downstream / 'vis').rglob('vis_image/*.png'))) == 2


def test_test_tool_deploy_form_gives_the_same_metric(downstream):
    """``tools/test.py --deploy`` (folded, fused where the device allows) evaluates the
    checkpoint of ``test_mim_train_and_test_downstream`` like the training form."""
    ckpt = downstream / 'work_mim' / 'iter_2.pth'
    if not ckpt.is_file():
        pytest.skip('needs the checkpoint of test_mim_train_and_test_downstream')
    mious = []
    for extra in ([], ['--deploy']):
        log = check(sh([sys.executable, str(TOOLS / 'test.py'), 'my_fpn.py', str(ckpt),
                        '--work-dir', str(downstream / f'test_{len(extra)}'), *extra],
                       downstream))
        mious.append(float(re.search(r'mIoU: ([\d.]+)', log).group(1)))
    assert 'testing the inference form' in log
    assert abs(mious[0] - mious[1]) < 0.5, mious


def test_downstream_config_forms(downstream, monkeypatch):
    """What a downstream script sees after ``import tinyvim_mm``: flat ``tinyvim_mm::NAME``
    bases keep the toolbox scopes; a clear error for a typo.
    (``test_mim_train_and_test_downstream`` runs such a config in a fresh process.)"""
    from mmengine.config import Config
    monkeypatch.chdir(downstream)
    (downstream / 'my_cls.py').write_text(
        "_base_ = 'tinyvim_mm::tinyvim_s_8xb128_in1k_noteacher.py'\n"
        "model = dict(head=dict(num_classes=10))\n")
    (downstream / 'broken.py').write_text("_base_ = 'tinyvim_mm::no_such_config.py'\n")
    cfg = Config.fromfile('my_fpn.py')
    assert cfg.model.backbone.type == 'TinyViM' and cfg.model.neck.out_channels == 16
    assert cfg.default_scope == 'mmseg' and cfg.model._scope_ == 'mmseg'
    cls = Config.fromfile('my_cls.py')
    assert cls.model.head.num_classes == 10 and cls.model.teacher is None
    assert cls.default_scope == 'mmpretrain' and '_scope_' not in cls.model
    with pytest.raises(FileNotFoundError, match=r"no_such_config.py.*looked for"):
        Config.fromfile('broken.py')
