"""Markdown tables of benchmark results (tinyvim_mm.benchmark.report)."""
from tinyvim_mm.benchmark.report import section_table


def _record(column: str, ms: float, median_ms: float, **extra) -> dict:
    return dict(section=0, kind='runner_train', model='cfg.py', label='TinyViM-S',
                column=column, status='ok', img_per_s=128e3 / ms, iter_per_s=1e3 / ms, ms=ms,
                median_ms=median_ms, p90_ms=median_ms * 1.1, peak_mem_gb=1.0,
                held_mem_gb=2.0, optim_wrapper='AmpOptimWrapper', **extra)


def test_runner_table_gives_mean_and_median_ratios():
    """A run whose mean carries a one-off stall: the mean ratio shows it, the median one
    does not; a variant that did not run gives dashes, not numbers."""
    section = dict(kind='runner_train', title='training', batch=None, img_size=None,
                   columns=[dict(name='released', label='as released'),
                            dict(name='default', label='the config'),
                            dict(name='teacher eager', label='x')],
                   models=[dict(name='cfg.py', label='TinyViM-S')])
    records = [_record('released', 150.0, 128.0),
               _record('default', 224.0, 85.0, compiled=True),
               dict(section=0, kind='runner_train', model='cfg.py', label='TinyViM-S',
                    column='teacher eager', status='timeout')]
    table = section_table(dict(sections=[section], records=records), 0)
    rows = [line.split(' | ') for line in table.splitlines() if line.startswith('| TinyViM-S')]
    assert table.splitlines()[2].endswith('| × released | × released, median |')
    assert rows[0][-2:] == ['1.00×', '1.00× |']
    assert rows[1][-2:] == [f'{150 / 224:.2f}×', f'{128 / 85:.2f}× |']
    assert 'compiled' in rows[1][2]
    assert rows[2][-2:] == ['—', '— |'] and rows[2][3] == 'timeout'


def test_runner_table_adds_the_spans_of_an_iteration():
    """With ``phases_ms`` (the loop's spans on the device's timeline) a second table gives
    them per variant, in the loop's order, a dash where a variant lacks a span, and the
    mean wait for data (where recorded); without any, there is no second table."""
    section = dict(kind='runner_train', title='training', batch=None, img_size=None,
                   columns=[dict(name='released', label='as released'),
                            dict(name='default', label='the config'),
                            dict(name='failed', label='x')],
                   models=[dict(name='cfg.py', label='TinyViM-S')])
    records = [_record('released', 150.0, 128.0, phases_ms={
                   'preprocess': 3.0, 'backbone, neck (+ teacher)': 80.0, 'between': 7.25},
                       data_ms=[1.0, 5.0, 300.0]),
               _record('default', 90.0, 88.0, phases_ms={
                   'preprocess': 2.0, 'backbone': 30.0, 'neck (+ teacher)': 21.5,
                   'between': 4.0}),
               dict(section=0, kind='runner_train', model='cfg.py', label='TinyViM-S',
                    column='failed', status='error: boom')]
    table = section_table(dict(sections=[section], records=records), 0)
    spans = table.split('Where an iteration goes')[1].splitlines()
    assert spans[2] == ('| config | variant | preprocess | backbone, neck (+ teacher) | '
                        'between | backbone | neck (+ teacher) | waiting for data, mean | '
                        'iteration, mean |')
    assert spans[4] == '| TinyViM-S | released | 3.0 | 80.0 | 7.2 | — | — | 102.0 | 150.0 |'
    assert spans[5] == '| TinyViM-S | default | 2.0 | — | 4.0 | 30.0 | 21.5 | — | 90.0 |'
    assert len(spans) == 6  # the failed variant has no row
    for record in records[:2]:
        del record['phases_ms']
    assert 'Where an iteration goes' not in section_table(
        dict(sections=[section], records=records), 0)
