"""Benchmark presets: MMEngine config files under ``configs/benchmark/`` holding a list of
``sections``, each a table: one measurement ``kind``, its rows (``models``) and columns
(treatment overrides, or training variants), measured like with like.

A section::

    dict(kind='throughput', title='...', models=['tinyvim-s:fast', 'timm:repvit_m1_1'],
         reference='tinyvim-s:fast', batch=1024, img_size=224,
         treatment=dict(dtype='fp16', channels_last=True),
         columns=[dict(name='eager'), dict(name='compiled', compile=True)])

Kinds and their keys (besides ``kind``, ``title``, ``models``, ``reference``,
``columns``, ``timing``):

- ``throughput``, ``train_step``, ``dense``, ``backbone``: ``batch``, ``img_size``,
  ``treatment``;
- ``latency``: ``batches``, ``img_size``, ``treatment``;
- ``runner_train``: ``iters``, ``warmup``, optional ``batch`` / ``img_size`` / ``workers``
  (default: the config's; data workers capped at the CPUs there are); its ``columns`` are
  training variants ``dict(name=..., cfg_options=...)``.

The ImageNet top-1 of the models (``top1``, a dict by model name) lives in
``configs/benchmark/_base_/zoo.py``, which presets inherit.
"""
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .models import ModelSpec, parse_model
from .runner_train import TrainVariant
from .timing import TimingConfig
from .treatments import Treatment

KINDS = ('throughput', 'latency', 'train_step', 'dense', 'backbone', 'runner_train')
COMMON_KEYS = {'kind', 'title', 'models', 'reference', 'columns', 'timing'}
KIND_KEYS = {
    'throughput': {'batch', 'img_size', 'treatment'},
    'train_step': {'batch', 'img_size', 'treatment'},
    'dense': {'batch', 'img_size', 'treatment'},
    'backbone': {'batch', 'img_size', 'treatment'},
    'latency': {'batches', 'img_size', 'treatment'},
    'runner_train': {'iters', 'warmup', 'batch', 'img_size', 'workers'},
}
#: Rough seconds of set-up per measurement on one H200, besides its timed calls
#: (measured there: model build, first call with cuDNN autotuning 4-6 s; torch.compile
#: 7-45 s more; a CUDA-graph column 2 s; latency 3-4 s per new batch size; a runner
#: run's first iteration 40-60 s, twice that when its config compiles): eager, extra
#: when compiled, with CUDA graphs instead.
COST_S = {'throughput': (6, 20, 2), 'latency': (14, 60, 4), 'train_step': (14, 60, 14),
          'dense': (11, 0, 0), 'backbone': (6, 25, 2), 'runner_train': (40, 0, 0)}
#: Once per run: imports, CUDA and cuDNN start-up, the first Triton compilations.
STARTUP_S = 25
#: Where preset files live: the checkout's configs, or the installed package's copy.
PRESET_DIRS = (Path(__file__).resolve().parents[2] / 'configs' / 'benchmark',
               Path(__file__).resolve().parents[1] / '.mim' / 'configs' / 'benchmark')


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of a section: a treatment, or for ``runner_train`` a training variant."""
    name: str
    treatment: Optional[Treatment] = None
    variant: Optional[TrainVariant] = None

    @property
    def label(self) -> str:
        return self.treatment.label if self.treatment else self.variant.label

    def describe(self) -> Dict[str, Any]:
        return dict(name=self.name, label=self.label,
                    compiled=bool(self.treatment and self.treatment.compile))


def _size(value: Union[int, List[int], Tuple[int, int], None]) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f'img_size must be an int or (H, W), got {value!r}')
    return size


@dataclasses.dataclass(frozen=True)
class Section:
    """One table of a benchmark: ``models`` (rows) times ``columns``."""
    kind: str
    title: str
    models: Tuple[ModelSpec, ...]
    columns: Tuple[Column, ...]
    reference: str  # a row label
    timing: TimingConfig = TimingConfig()
    batch: Optional[int] = None
    batches: Tuple[int, ...] = ()
    img_size: Optional[Tuple[int, int]] = None
    iters: int = 20
    warmup: int = 5
    workers: Optional[int] = None

    @classmethod
    def parse(cls, entry: Dict[str, Any]) -> 'Section':
        """Check a section dict (module docstring) and parse it.

        Raises:
            ValueError: unknown kind / key / model / treatment option, missing values.
        """
        entry = dict(entry)
        kind = entry.get('kind')
        if kind not in KINDS:
            raise ValueError(f'section kind {kind!r}: expected one of {KINDS}')
        unknown = set(entry) - COMMON_KEYS - KIND_KEYS[kind]
        if unknown:
            raise ValueError(f'{kind} section: unknown key(s) {sorted(unknown)}; valid: '
                             f'{sorted(COMMON_KEYS | KIND_KEYS[kind])}')
        if not entry.get('models'):
            raise ValueError(f'{kind} section {entry.get("title")!r} has no models')
        models = tuple(parse_model(m) for m in entry['models'])
        labels = [m.label for m in models]
        if len(set(labels)) != len(labels):
            raise ValueError(f'{kind} section: row labels repeat ({labels}); give the '
                             'entries distinct labels')
        reference = entry.get('reference', labels[0])
        by_name = {m.name: m.label for m in models}
        if reference not in labels:
            if reference not in by_name or [m.name for m in models].count(reference) > 1:
                raise ValueError(f'reference {reference!r} is neither a label {labels} nor '
                                 'the name of exactly one model')
            reference = by_name[reference]
        columns = entry.get('columns') or [dict(name='eager')]
        if kind == 'runner_train':
            parsed = tuple(Column(v.name, variant=v)
                           for v in (TrainVariant.parse(c) for c in columns))
        else:
            base = Treatment(**dict(entry.get('treatment') or {}))
            parsed = tuple(Column(c['name'], treatment=base.replace(
                **{k: v for k, v in c.items() if k != 'name'})) for c in map(dict, columns))
        if len({c.name for c in parsed}) != len(parsed):
            raise ValueError(f'{kind} section: column names repeat: {[c.name for c in parsed]}')
        batch = entry.get('batch')
        if kind in ('throughput', 'train_step', 'dense', 'backbone') and not batch:
            raise ValueError(f'{kind} section {entry.get("title")!r} needs a batch')
        batches = tuple(entry.get('batches') or ())
        if kind == 'latency' and not batches:
            raise ValueError(f'latency section {entry.get("title")!r} needs batches')
        img_size = _size(entry.get('img_size'))
        if kind != 'runner_train' and img_size is None:
            raise ValueError(f'{kind} section {entry.get("title")!r} needs an img_size')
        return cls(kind, entry.get('title') or kind, models, parsed, reference,
                   TimingConfig(**dict(entry.get('timing') or {})), batch, batches, img_size,
                   entry.get('iters', 20), entry.get('warmup', 5), entry.get('workers'))

    def cost_s(self, column: Column) -> float:
        """Rough seconds one measurement of this section takes on an H200."""
        eager, compiled, graphs = COST_S[self.kind]
        treatment = column.treatment
        if self.kind == 'runner_train':
            return eager + 0.5 * (self.iters + self.warmup)
        timed = self.timing.min_time * (len(self.batches) if self.kind == 'latency' else 1)
        if treatment.compile:
            return eager + compiled + timed
        return (graphs if treatment.cuda_graphs and graphs else eager) + timed

    @property
    def base_label(self) -> str:
        """What every column shares: the first column's treatment without compile and
        CUDA graphs (runner sections: ``''``)."""
        first = self.columns[0].treatment
        return first.replace(compile=False, cuda_graphs=False).label if first else ''

    def describe(self) -> Dict[str, Any]:
        """JSON-able description (what the report needs to redraw the table)."""
        return dict(kind=self.kind, title=self.title, reference=self.reference,
                    models=[m.as_dict() for m in self.models],
                    columns=[c.describe() for c in self.columns],
                    treatment=self.base_label,
                    batch=self.batch, batches=list(self.batches),
                    img_size=list(self.img_size) if self.img_size else None,
                    iters=self.iters, warmup=self.warmup, workers=self.workers,
                    timing=dataclasses.asdict(self.timing))


def available_presets() -> List[str]:
    """Names of the preset files (``configs/benchmark/*.py``)."""
    for root in PRESET_DIRS:
        if root.is_dir():
            return sorted(p.stem for p in root.glob('*.py'))
    return []


def preset_path(name: str) -> Path:
    """The file of preset ``name`` (a name or a path to a config file).

    Raises:
        ValueError: no such preset (the message lists the available ones).
    """
    if name.endswith('.py') and Path(name).is_file():
        return Path(name)
    for root in PRESET_DIRS:
        if (root / f'{name}.py').is_file():
            return root / f'{name}.py'
    raise ValueError(f'unknown preset {name!r}; available: {", ".join(available_presets())} '
                     '(or the path of a preset file)')


def load_preset(name: str) -> Tuple[List[Section], Dict[str, Any], Optional[float]]:
    """``(sections, top1, time_budget)`` of preset ``name`` (see :func:`preset_path`)."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(preset_path(name))).to_dict()
    if not cfg.get('sections'):
        raise ValueError(f'preset {name!r} defines no sections')
    sections = [Section.parse(s) for s in cfg['sections']]
    return sections, dict(cfg.get('top1') or {}), cfg.get('time_budget')


def select_sections(sections: Sequence[Section], models: Sequence[str] = (),
                    columns: Sequence[str] = ()) -> List[Section]:
    """The part of a preset to run: the rows whose label or model name contains one of
    ``models`` (case-insensitive; a section's reference row stays, for its ratios, except
    in ``runner_train`` sections, whose ratios are within a row) and the columns named in
    ``columns`` (exactly); empty means all. Sections with no matching row or no such
    column are dropped.

    Raises:
        ValueError: a pattern or column name that matches nothing (with what there is).
    """
    def matches(model: ModelSpec, pattern: str) -> bool:
        return pattern.lower() in model.label.lower() or pattern.lower() in model.name.lower()

    for pattern in models:
        if not any(matches(m, pattern) for s in sections for m in s.models):
            labels = sorted({m.label for s in sections for m in s.models})
            raise ValueError(f'no model of the preset matches {pattern!r}; its rows: {labels}')
    names = sorted({c.name for s in sections for c in s.columns})
    unknown = sorted(set(columns) - set(names))
    if unknown:
        raise ValueError(f'no column named {unknown} in the preset; its columns: {names}')
    chosen = []
    for section in sections:
        # runner_train's ratios are over each row's first column, the others' over a row
        keep = section.reference if section.kind != 'runner_train' else None
        hits = [m for m in section.models if any(matches(m, p) for p in models)]
        rows = tuple(m for m in section.models if not models or m in hits or m.label == keep)
        cols = tuple(c for c in section.columns if not columns or c.name in columns)
        if cols and (hits or not models):
            chosen.append(dataclasses.replace(section, models=rows, columns=cols,
                                              reference=keep or rows[0].label))
    if not chosen:
        raise ValueError(f'no section of the preset has both a row matching {list(models)} '
                         f'and a column of {list(columns)}')
    return chosen


def load_top1() -> Dict[str, Any]:
    """The ImageNet top-1 table of ``configs/benchmark/_base_/zoo.py``."""
    from mmengine.config import Config
    for root in PRESET_DIRS:
        if (root / '_base_' / 'zoo.py').is_file():
            return dict(Config.fromfile(str(root / '_base_' / 'zoo.py')).to_dict()['top1'])
    return {}
