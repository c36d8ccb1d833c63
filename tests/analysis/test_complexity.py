"""Parameter and MAC counts against the paper's numbers."""
import subprocess
import sys

import pytest
import torch.nn as nn

from tinyvim_mm.models import TinyViM
from tinyvim_mm.models.layers import LaplaceMixer
from tinyvim_mm.analysis.complexity import classifier_complexity, count_macs

from conftest import REPO

PAPER = {'s': (5.6, 0.9), 'b': (11.0, 1.5), 'l': (31.7, 4.7)}


class FreeScan(nn.Module):
    """Stands in for the scan and costs nothing (uses ``delta`` so that the
    projections feeding the scan stay in the traced graph); not a ``SelectiveScan``, so
    ``count_macs`` adds nothing for it."""

    backend = 'torch'  # what the mixer reads to pick its path

    def forward(self, u, delta, *args):
        return u + delta


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_params_and_macs_match_paper(arch):
    result = classifier_complexity(arch)
    params, macs = PAPER[arch]
    assert result['params_m'] == pytest.approx(params, rel=0.03)
    assert result['gmacs'] == pytest.approx(macs, rel=0.10)


def test_scan_is_counted():
    """The scan adds exactly the reference recurrence's count, whatever it traces to."""
    from tinyvim_mm.ops import selective_scan_flops
    model = TinyViM('s', out_indices=(3, ), scan_backend='torch').eval()
    total = count_macs(model, (1, 3, 224, 224))
    for module in model.modules():
        if isinstance(module, LaplaceMixer):
            module.scan = FreeScan()
    without = count_macs(model, (1, 3, 224, 224))
    # every scan runs on a 7x7 grid at 224 (pooling to 1/32)
    lows = [12, 32, 84, 84, 168]
    expected = sum(selective_scan_flops(1, 49, 4 * d, 8) for d in lows)
    assert total - without == expected


def test_get_flops_tool_prints_table():
    out = subprocess.run([sys.executable, str(REPO / 'tools' / 'get_flops.py'), '--arch', 's'],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert 'TinyViM-S' in out and '5.68' in out


def test_scans_that_bypass_their_module_are_an_error():
    """A scan that runs without its SelectiveScan module (the fused Triton cross scan
    does) would be missing from the count: an error, not a low number."""
    from tinyvim_mm.models.layers import SelectiveScan

    class Bypass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scan = SelectiveScan('torch')
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match='1 of 1 selective scans ran without'):
        count_macs(Bypass(), (1, 3, 4, 4))
