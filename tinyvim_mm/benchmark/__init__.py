"""Benchmarks, like with like: every model of a table gets the same treatment in the same
run, and the tables say what each ran with.

- :mod:`.timing`: warm-up, CUDA-event / ``perf_counter`` timing, medians and p90, a time
  limit per measurement;
- :mod:`.models`: model entries (``tinyvim-s``, ``tinyvim-s:fast``, ``timm:NAME``, toolbox
  configs) and their builders;
- :mod:`.treatments`: precision, channels-last, folding, ``torch.compile``, CUDA graphs;
- :mod:`.measure`: throughput, latency, training step, dense end-to-end and
  backbone-only inference;
- :mod:`.runner_train`: a config's real training loop through MMEngine's ``Runner`` on
  in-memory packed samples (:mod:`.synthetic`);
- :mod:`.presets`: sections (tables) from ``configs/benchmark/*.py``;
- :mod:`.suite`: runs sections under a time budget, the JSON rewritten after each cell;
- :mod:`.report`: markdown tables and the throughput-vs-top-1 plot;
- :mod:`.scan`: the selective-scan backends side by side.

CLIs: ``tools/benchmark.py`` and ``tools/benchmark_scan.py``.
"""
from .models import ModelSpec, parse_model
from .presets import Section, available_presets, load_preset, load_top1, select_sections
from .report import load_results, markdown, plot
from .suite import Suite
from .timing import TimingConfig
from .treatments import Treatment

__all__ = [
    'ModelSpec', 'Section', 'Suite', 'TimingConfig', 'Treatment', 'available_presets',
    'load_preset', 'load_results', 'load_top1', 'markdown', 'parse_model', 'plot',
    'select_sections'
]
