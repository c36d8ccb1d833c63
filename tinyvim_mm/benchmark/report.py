"""Reports of a benchmark run (live, or read back from its JSON): one markdown table per
section, with every model's ImageNet top-1 and its ratio to the section's reference
model, and a throughput-vs-top-1 (Pareto) plot."""
import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional

from .models import zoo_key

WIDE_KINDS = ('throughput', 'train_step', 'dense', 'backbone')


def load_results(path: str) -> Dict[str, Any]:
    """A JSON written by :class:`~tinyvim_mm.benchmark.suite.Suite` (``sections``,
    ``records``, ``top1``, ``env``), or one of the former ``tools/benchmark.py``
    (``results``, e.g. ``docs/benchmark_h100.json``): its inference rows become one
    throughput section."""
    data = json.loads(Path(path).read_text())
    if 'records' in data:
        return data
    if 'results' not in data:
        raise ValueError(f'{path}: not a benchmark JSON (no records / results)')
    rows = [r for r in data['results'] if r.get('variant', {}).get('mode') == 'infer']
    section = dict(kind='throughput', title=f'{Path(path).name} (former format)',
                   reference=rows[0]['label'] if rows else '', treatment='see each model',
                   models=[dict(name=r['label'], label=r['label']) for r in rows],
                   columns=[dict(name='measured', label='as labelled', compiled=False)],
                   batch=None, img_size=None)
    records = [dict(section=0, kind='throughput', model=r['label'], label=r['label'],
                    column='measured', status=r.get('status'), img_per_s=r.get('img_per_s'),
                    peak_mem_gb=r.get('peak_mem_gb')) for r in rows]
    return dict(env=data.get('env', {}), sections=[section], records=records, top1={})


def _cells(data: Dict[str, Any], index: int) -> Dict[tuple, Dict[str, Any]]:
    return {(r['label'], r['column']): r for r in data['records'] if r['section'] == index}


def _top1(data: Dict[str, Any], name: str) -> str:
    entry = (data.get('top1') or {}).get(zoo_key(name))
    return f'{entry["top1"]:.1f}' if entry else '—'


def _value(record: Optional[Dict[str, Any]], key: str, fmt: str = '') -> str:
    """``record[key]`` formatted (default: 4 significant digits, thousands separated), or
    the record's status where it did not run."""
    if record is None:
        return '—'
    if record.get('status') != 'ok':
        return str(record.get('status', '—')).split(':')[0]
    value = record.get(key)
    if value is None:
        return '—'
    return format(value, fmt) if fmt else f'{value:,.0f}' if value >= 1000 else f'{value:.4g}'


def _ratio(record: Optional[Dict[str, Any]], ref: Optional[Dict[str, Any]], key: str) -> str:
    ok = [r for r in (record, ref) if r and r.get('status') == 'ok' and r.get(key)]
    return f'{record[key] / ref[key]:.2f}×' if len(ok) == 2 else '—'


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def _caption(section: Dict[str, Any]) -> str:
    size = section.get('img_size')
    shape = f'{size[0]}×{size[1]}' if size else 'the config\'s input size'
    batch = section.get('batch')
    if section['kind'] == 'latency':
        batch = ', '.join(map(str, section['batches']))
    columns = '; '.join(f'{c["name"]}: {c["label"]}' for c in section['columns'])
    over = (f'each config\'s {section["columns"][0]["name"]}' if section['kind'] == 'runner_train'
            else section['reference'])
    return (f'**{section["title"]}** — {section["kind"]}, batch {batch or "from the config"}, '
            f'{shape}; {columns}. Ratios: over {over} in the same run.')


def _wide(data: Dict[str, Any], section: Dict[str, Any], cells: Dict[tuple, Any]):
    """One row per model, img/s and ratio per column (peak memory for training steps)."""
    columns, ref, kind = [c['name'] for c in section['columns']], section['reference'], \
        section['kind']
    header = ['model', 'top-1 %', 'treatment']
    for name in columns:
        header += [f'{name} img/s', '×ref'] + (['peak GB'] if kind == 'train_step' else [])
    rows = []
    for m in section['models']:
        row = [m['label'], _top1(data, m['name']), section.get('treatment', '')]
        for name in columns:
            cell = cells.get((m['label'], name))
            row += [_value(cell, 'img_per_s'),
                    _ratio(cell, cells.get((ref, name)), 'img_per_s')]
            if kind == 'train_step':
                row.append(_value(cell, 'peak_mem_gb', '.2f'))
        rows.append(row)
    return header, rows


def _latency(data: Dict[str, Any], section: Dict[str, Any], cells: Dict[tuple, Any]):
    """One row per model, median (p90) ms per column and batch, the speed ratio at the
    first batch size."""
    columns, ref = [c['name'] for c in section['columns']], section['reference']
    batches = [str(b) for b in section['batches']]
    header = ['model', 'top-1 %', 'treatment']
    for name in columns:
        header += [f'{name} b={b} ms (p90)' for b in batches] + [f'×ref b={batches[0]}']
    rows = []
    for m in section['models']:
        row = [m['label'], _top1(data, m['name']), section.get('treatment', '')]
        for name in columns:
            cell = cells.get((m['label'], name))
            if not cell or cell.get('status') != 'ok':
                row += [_value(cell, 'ms')] * len(batches) + ['—']
                continue
            per = cell['batches']
            row += [f'{per[b]["ms"]:.2f} ({per[b]["p90_ms"]:.2f})' for b in batches]
            ref_cell = cells.get((ref, name))
            ref_ms = (ref_cell['batches'][batches[0]]['ms']
                      if ref_cell and ref_cell.get('status') == 'ok' else None)
            row.append(f'{ref_ms / per[batches[0]]["ms"]:.2f}×' if ref_ms else '—')
        rows.append(row)
    return header, rows


def _iter_ms(cell: Dict[str, Any]) -> str:
    """Mean ms per iteration (median, p90); runs saved before the mean was recorded
    (their ``ms`` and img/s are the median's) give no mean."""
    if cell.get('median_ms') is None:
        return f'— ({cell["ms"]:.1f}, {cell["p90_ms"]:.1f})'
    return f'{cell["ms"]:.1f} ({cell["median_ms"]:.1f}, {cell["p90_ms"]:.1f})'


def _median_ratio(cell: Optional[Dict[str, Any]], first: Optional[Dict[str, Any]]) -> str:
    """Speed over ``first`` from the median iterations (a one-off stall, which the mean
    carries, does not move it)."""
    ok = all(c and c.get('status') == 'ok' and c.get('median_ms') for c in (cell, first))
    return f'{first["median_ms"] / cell["median_ms"]:.2f}×' if ok else '—'


def _runner(data: Dict[str, Any], section: Dict[str, Any], cells: Dict[tuple, Any]):
    """One row per config and training variant; ratios over the config's first variant,
    by the mean iteration (img/s) and by the median one."""
    columns = [c['name'] for c in section['columns']]
    header = ['config', 'variant', 'runs with', 'img/s', 'iter/s', 'ms/iter (median, p90)',
              'peak GB', 'held GB', f'× {columns[0]}', f'× {columns[0]}, median']
    rows = []
    for m in section['models']:
        first = cells.get((m['label'], columns[0]))
        for name in columns:
            cell = cells.get((m['label'], name))
            ok = bool(cell) and cell.get('status') == 'ok'
            ran = ', '.join(
                [cell['optim_wrapper']]
                + [flag for flag in ('channels_last', 'fused_optimizer', 'compiled',
                                     'async_logging') if cell.get(flag)]
                + ([f'host threads {cell["host_threads"]}'] if cell.get('host_threads') else [])
                + ([f'{cell["workers"]} data workers'] if cell.get('workers') else [])
            ) if ok else '—'
            rows.append([m['label'], name, ran, _value(cell, 'img_per_s'),
                         _value(cell, 'iter_per_s'),
                         _iter_ms(cell) if ok else '—',
                         _value(cell, 'peak_mem_gb', '.2f'), _value(cell, 'held_mem_gb', '.2f'),
                         _ratio(cell, first, 'img_per_s'), _median_ratio(cell, first)])
    return header, rows


def _phases(section: Dict[str, Any], cells: Dict[tuple, Any]) -> Optional[str]:
    """Where a runner iteration's time goes on the device's timeline (median ms of each
    span, ``phases_ms``), one row per config and variant; ``None`` if no cell has them."""
    measured = [(m['label'], c['name']) for m in section['models'] for c in section['columns']
                if (cells.get((m['label'], c['name'])) or {}).get('phases_ms')]
    if not measured:
        return None
    names: List[str] = []
    for key in measured:
        names += [n for n in cells[key]['phases_ms'] if n not in names]
    rows = []
    for config, variant in measured:
        cell = cells[(config, variant)]
        spans = cell['phases_ms']
        waits = cell.get('data_ms')
        rows.append([config, variant] + [f'{spans[n]:.1f}' if n in spans else '—'
                                         for n in names]
                    + [f'{statistics.fmean(waits):.1f}' if waits else '—', f'{cell["ms"]:.1f}'])
    return ('Where an iteration goes, median ms of each span on the device\'s timeline '
            '(CUDA events; on the CPU, the clock; "between": from one iteration\'s end to '
            'the next one\'s start), and the mean wait for the next batch (the host\'s clock; '
            'data workers that fall behind stall a few iterations in many, which medians '
            'hide):\n\n'
            + _table(['config', 'variant'] + names + ['waiting for data, mean',
                                                      'iteration, mean'], rows))


def section_table(data: Dict[str, Any], index: int) -> str:
    """The markdown table of section ``index`` (caption line, then the table; for
    runner-level training also the spans of an iteration)."""
    section = data['sections'][index]
    cells = _cells(data, index)
    kind = section['kind']
    build = _wide if kind in WIDE_KINDS else _latency if kind == 'latency' else _runner
    header, rows = build(data, section, cells)
    text = _caption(section) + '\n\n' + _table(header, rows)
    spans = _phases(section, cells) if kind == 'runner_train' else None
    return text + ('\n\n' + spans if spans else '')


def markdown(data: Dict[str, Any]) -> str:
    """Every section's table, and the environment in one line."""
    env = data.get('env', {})
    head = ', '.join(f'{k} {env[k]}' for k in ('gpu', 'device', 'torch', 'cuda', 'triton', 'timm')
                     if env.get(k))
    tables = [section_table(data, i) for i in range(len(data['sections']))]
    return '\n\n'.join([f'Environment: {head}'] + tables)


def _pareto(points: List[tuple]) -> List[tuple]:
    """The ``(speed, top1)`` points no other point beats on both, by speed."""
    front, best = [], -1.0
    for speed, top1 in sorted(points, key=lambda p: (-p[0], -p[1])):
        if top1 > best:
            front.append((speed, top1))
            best = top1
    return sorted(front)


def _throughput_panels(data: Dict[str, Any]) -> List[tuple]:
    """``[(title, {label: (top1, {column: (img/s, style)})})]``, one panel per batch,
    size and treatment; style ``'compiled'``, ``'graphs'`` or ``'eager'``."""
    top1 = data.get('top1') or {}
    groups: Dict[tuple, List[int]] = {}
    for i, s in enumerate(data['sections']):
        if s['kind'] == 'throughput':
            key = (s.get('batch'), tuple(s.get('img_size') or ()), s.get('treatment'))
            groups.setdefault(key, []).append(i)
    panels = []
    for (batch, size, treatment), indices in groups.items():
        points: Dict[str, tuple] = {}
        for i in indices:
            styles = {c['name']: 'compiled' if c.get('compiled') else
                      'graphs' if 'CUDA graphs' in c['label'] else 'eager'
                      for c in data['sections'][i]['columns']}
            for r in data['records']:
                entry = top1.get(zoo_key(r['model']))
                if r['section'] == i and r.get('status') == 'ok' and entry:
                    points.setdefault(r['label'], (entry['top1'], {}))[1][r['column']] = (
                        r['img_per_s'], styles[r['column']])
        shape = f'{size[0]}×{size[1]}, ' if size else ''
        if points:
            panels.append((f'batch {batch}, {shape}{treatment}', points))
    return panels


#: Label offsets from a model's fastest marker, in points, tried in turn: right of it
#: (above, below, higher, lower), then left of it.
_LABEL_OFFSETS = ((6, 4, 'left'), (6, -10, 'left'), (6, 12, 'left'), (6, -18, 'left'),
                  (-7, 4, 'right'), (-7, -10, 'right'))


def _place_labels(fig, ax, anchors: List[tuple], colours: Dict[str, Any]) -> None:
    """Annotate each ``(label, img/s, top1)`` beside its marker at the first offset of
    :data:`_LABEL_OFFSETS` whose text box overlaps no label placed before, the legend or
    the axes' edge (else the first offset); fastest models first."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [ax.get_legend().get_window_extent(renderer)]

    def put(label: str, xy: tuple, offset: tuple):
        dx, dy, align = offset
        text = ax.annotate(label, xy, xytext=(dx, dy), ha=align, textcoords='offset points',
                           fontsize=7, color=colours[label])
        return text, text.get_window_extent(renderer)

    for label, speed, top1 in sorted(anchors, key=lambda a: -a[1]):
        for offset in _LABEL_OFFSETS:
            text, box = put(label, (speed, top1), offset)
            if (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
                    and box.y1 <= frame.y1 and not any(box.overlaps(t) for t in taken)):
                break
            text.remove()
        else:  # nowhere free: the first offset
            text, box = put(label, (speed, top1), _LABEL_OFFSETS[0])
        taken.append(box)


def plot(data: Dict[str, Any], path: str) -> None:
    """Throughput (img/s, log scale) against ImageNet top-1 for the throughput sections:
    one marker per model and column (hollow circle eager, filled compiled, diamond CUDA
    graph), a model's markers joined, TinyViM in reds, the Pareto front of each column
    style dashed. Sections of another batch, size or treatment get their own panel.

    Raises:
        ValueError: no throughput measurement of a model with a known top-1.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    panels = _throughput_panels(data)
    if not panels:
        raise ValueError('nothing to plot: no throughput measurement of a model with a top-1')
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 6), squeeze=False)
    markers = dict(eager=('o', False), compiled=('o', True), graphs=('D', False))
    reds, others = plt.get_cmap('Reds'), plt.get_cmap('tab10')
    for ax, (title, points) in zip(axes[0], panels):
        tinyvim = sorted(label for label in points if label.startswith('TinyViM'))
        peers = sorted(label for label in points if not label.startswith('TinyViM'))
        colours = {label: reds(0.55 + 0.4 * i / max(len(tinyvim) - 1, 1))
                   for i, label in enumerate(tinyvim)}
        colours.update({label: others([0, 1, 2, 4, 5, 6, 7, 8, 9][i % 9])
                        for i, label in enumerate(peers)})
        fronts: Dict[str, List[tuple]] = {}
        anchors = []  # (label, fastest img/s, top1)
        for label, (top1, runs) in sorted(points.items()):
            speeds = sorted(speed for speed, _ in runs.values())
            ax.plot(speeds, [top1] * len(speeds), '-', color=colours[label], lw=1, alpha=0.5)
            for speed, style in runs.values():
                marker, filled = markers[style]
                ax.plot(speed, top1, marker, ms=8, color=colours[label],
                        markerfacecolor=colours[label] if filled else 'white')
                fronts.setdefault(style, []).append((speed, top1))
            anchors.append((label, speeds[-1], top1))
        for style, pts in fronts.items():
            front = _pareto(pts)
            ax.plot(*zip(*front), '--', color='grey', lw=0.8,
                    alpha=0.9 if style == 'compiled' else 0.4)
        for style, (marker, filled) in markers.items():
            if style in fronts:
                ax.plot([], [], marker, color='grey', markerfacecolor='grey' if filled else 'white',
                        label={'eager': 'eager', 'compiled': 'torch.compile',
                               'graphs': 'CUDA graph'}[style])
        ax.set_xscale('log')
        low, high = ax.get_xlim()
        ax.set_xlim(low, high * 1.35)  # room for the labels
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:,.0f}'))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel('img/s (log scale)')
        ax.set_ylabel('ImageNet-1k top-1 (%)')
        ax.set_title(title, fontsize=8)
        # the slow, less accurate corner is the one a Pareto picture leaves empty
        ax.legend(fontsize=7, loc='lower left')
        ax.grid(alpha=0.3, which='both')
        _place_labels(fig, ax, anchors, colours)
    fig.tight_layout()
    fig.savefig(path, dpi=140)
    plt.close(fig)
