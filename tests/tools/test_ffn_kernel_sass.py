"""``tools/misc/ffn_kernel_sass.py``: the fused FFN kernel compiled for sm_90 on a machine
without a GPU, its loops counted. Also pins what the kernel's GELU costs: one
special-function instruction (``MUFU``: the ``exp2``) per hidden value."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

TOOL = REPO / 'tools' / 'misc' / 'ffn_kernel_sass.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('ffn_kernel_sass', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    triton = pytest.importorskip('triton')
    if not (Path(triton.__file__).parent / 'backends' / 'nvidia' / 'bin' / 'nvdisasm').exists():
        pytest.skip("Triton without its NVIDIA backend's tools")
    return _load_tool()


def test_hidden_loop_has_one_exp2_per_hidden_value(tool):
    # TinyViM-S stage 1 in half precision: BLOCK_M 64 x BLOCK_H 32 hidden values per
    # iteration over 4 warps = 16 per thread
    constexprs = dict(HAS_DW=True, KS=3, BLOCK_M=64, BLOCK_C=64, BLOCK_H=32, PRECISION='tf32')
    compiled = tool.compile_kernel(tool.KERNELS, constexprs, arch=90, warps=4, stages=1)
    usage, sass = tool.disassemble(compiled.asm['cubin'])
    assert 'REG:' in usage and 'LOCAL:0' in usage  # no spills
    bodies = tool.loops(sass)
    assert len(bodies) == 2, bodies  # the depth-wise taps, the hidden columns
    taps, hidden = (counts for _, counts in bodies)
    assert taps['MUFU'] == 0 and taps['LDG'] >= 4
    assert hidden['HGMMA'] > 0  # both 1x1 convs on the tensor cores
    assert hidden['MUFU'] == 16  # an erf-based GELU takes 32 (an exp and a reciprocal)


def test_loops_finds_a_loop_body():
    sass = '\n'.join([
        '        /*0000*/                   MOV R1, c[0x0][0x28] ;',
        '.L_x_0:',
        '        /*0010*/                   FFMA R2, R2, R3, R4 ;',
        '        /*0020*/               @P0 MUFU.EX2 R5, R2 ;',
        '        /*0030*/               @P1 BRA `(.L_x_0) ;',
        '        /*0040*/                   EXIT ;'])
    (n, counts), = _load_tool().loops(sass)
    assert n == 3 and counts == {'FFMA': 1, 'MUFU': 1, 'BRA': 1}


def test_cli_rejects_bad_channels():
    out = subprocess.run([sys.executable, str(TOOL), '--channels', '0'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and '--channels must be positive' in out.stderr
