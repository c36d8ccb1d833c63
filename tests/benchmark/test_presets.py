"""Presets are data: every preset under configs/benchmark loads into sections whose
models, treatments and columns parse; the readme preset fits its time; part of a preset
can be selected; bad input gets a clear error."""
import pytest

from tinyvim_mm.benchmark import (Section, available_presets, load_preset, load_top1,
                                  select_sections)
from tinyvim_mm.benchmark.models import parse_model
from tinyvim_mm.benchmark.presets import STARTUP_S, preset_path

REQUIRED = ('peers_s', 'peers_b', 'peers_l', 'latency', 'dense', 'train', 'train_teacher',
            'readme')


@pytest.mark.parametrize('name', REQUIRED)
def test_preset_loads(name):
    sections, top1, _ = load_preset(name)
    assert sections
    for section in sections:
        for column in section.columns:
            assert column.label
        for spec in section.models:  # every TinyViM / timm row has its top-1 beside it
            if spec.kind != 'config':
                assert spec.zoo_key in top1, spec.name


def test_peer_tables_treat_every_model_alike():
    for name, arch in (('peers_s', 's'), ('peers_b', 'b'), ('peers_l', 'l')):
        (section, ), top1, _ = load_preset(name)
        assert section.kind == 'throughput' and section.batch == 1024
        assert section.img_size == (224, 224) and section.reference == f'TinyViM-{arch.upper()}'
        eager, compiled = section.columns
        assert eager.treatment.replace(compile=True) == compiled.treatment
        assert eager.treatment.dtype == 'fp16' and eager.treatment.channels_last
        assert eager.treatment.reparameterize and compiled.treatment.compile_mode is None
        peers = [s for s in section.models if s.kind == 'timm']
        assert len(peers) >= 4
        for peer in peers:  # accuracy-matched: within about 2.5 points of TinyViM
            assert abs(top1[peer.name]['top1'] - top1[f'tinyvim-{arch}']['top1']) < 3.5


def test_readme_fits_nine_minutes():
    """Estimated with the costs measured on an H200, torch.compile included; the time
    budget (skipping what no longer fits) keeps the run under 9 minutes anyway."""
    sections, _, budget = load_preset('readme')
    estimate = STARTUP_S + sum(s.cost_s(c) * len(s.models) for s in sections
                               for c in s.columns)
    assert estimate <= 9 * 60 and budget is not None and budget + STARTUP_S <= 9 * 60
    assert {s.kind for s in sections} == {'throughput', 'dense', 'backbone'}


def test_select_part_of_a_preset():
    """Rows by pattern with each table's reference row kept (runner_train: no reference
    row, its ratios are within a row), columns by name, tables without either dropped."""
    sections, _, _ = load_preset('readme')
    (s_table, ) = select_sections(sections, ['REPVIT'], ['compiled'])
    assert [m.label for m in s_table.models] == ['TinyViM-S fast', 'repvit_m1_1']
    assert s_table.reference == 'TinyViM-S fast' and [c.name for c in s_table.columns] == [
        'compiled']
    (l_table, ) = select_sections(sections, ['tinyvim-l'])  # the reference row itself
    assert [m.label for m in l_table.models] == ['TinyViM-L fast']
    assert select_sections(sections) == list(sections)
    (teacher, ) = select_sections(load_preset('train_teacher')[0], ['tinyvim-b'],
                                  ['released', 'default'])
    assert [m.label for m in teacher.models] == ['TinyViM-B, RegNetY-16GF teacher']
    assert teacher.reference == 'TinyViM-B, RegNetY-16GF teacher'
    assert [c.name for c in teacher.columns] == ['released', 'default']
    with pytest.raises(ValueError, match="no model of the preset matches 'nope'; its rows"):
        select_sections(sections, ['nope'])
    with pytest.raises(ValueError, match=r"no column named \['fast'\] .* columns: \['CUDA"):
        select_sections(sections, columns=['fast'])
    with pytest.raises(ValueError, match='no section of the preset has both'):
        select_sections(sections, ['tinyvim-b'], ['compiled'])

def test_top1_table():
    top1 = load_top1()
    assert top1['tinyvim-s']['top1'] == 79.2 and top1['timm:repvit_m1_1']['top1'] == 80.826
    assert all('source' in entry for entry in top1.values())


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match='unknown preset .nope.; available: .*peers_s'):
        preset_path('nope')
    assert set(REQUIRED) <= set(available_presets())


@pytest.mark.parametrize('entry, message', [
    ('timm:repvit_m1_11', "unknown timm model 'repvit_m1_11'; close: .*repvit_m1_1"),
    ('resnet50', "unknown model 'resnet50': expected tinyvim"),
    ('tinyvim-x', "unknown model 'tinyvim-x'"),
    (dict(name='tinyvim-s', optimize=dict(fuse_blocks=False)), 'need the fast form'),
    (dict(name='tinyvim-s:fast', optimize=dict(nope=1)), "unknown optimize option.*'nope'"),
    (dict(name='tinyvim-s', colour='red'), "unknown option.*'colour'"),
    ('configs/nope.py', "config 'configs/nope.py' not found"),
    (dict(name='timm:repvit_m1_1', cuda_graphs=['backbone']), 'config models only'),
    (dict(name='configs/mask_rcnn_tinyvim_b.py', cuda_graphs='backbone'), 'list of submodule'),
    (dict(name='configs/mask_rcnn_tinyvim_b.py', cuda_graphs=[]), 'list of submodule'),
])
def test_bad_model_entries(entry, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_model(entry)


@pytest.mark.parametrize('changes, message', [
    (dict(kind='speed'), "section kind 'speed'"),
    (dict(bacth=8), "unknown key.*'bacth'"),
    (dict(reference='tinyvim-l'), "reference 'tinyvim-l' is neither"),
    (dict(models=['tinyvim-s', 'tinyvim-s']), 'row labels repeat'),
    (dict(treatment=dict(dtype='fp8')), "unknown dtype 'fp8'"),
    (dict(columns=[dict(name='x', compiled=True)]), "unknown treatment option.*'compiled'"),
    (dict(batch=None), 'needs a batch'),
])
def test_bad_sections(changes, message):
    entry = dict(kind='throughput', models=['tinyvim-s', 'tinyvim-s:fast'], batch=2,
                 img_size=32)
    with pytest.raises(ValueError, match=message):
        Section.parse(dict(entry, **changes))


def test_cell_order():
    """Throughput tables run column by column (the extra columns are what a short budget
    skips); runner-level training row by row (a row's released and default runs back to
    back: its ratio)."""
    from tinyvim_mm.benchmark.suite import section_cells
    sections, _, _ = load_preset('train')
    train_cls = next(s for s in sections if s.kind == 'runner_train')
    cells = [(spec.label, column.name) for spec, column in section_cells(train_cls)]
    first = train_cls.models[0].label
    assert cells[:len(train_cls.columns)] == [(first, c.name) for c in train_cls.columns]
    (peers, ), _, _ = load_preset('peers_s')
    cells = [(spec.label, column.name) for spec, column in section_cells(peers)]
    assert [c for _, c in cells[:len(peers.models)]] == ['eager'] * len(peers.models)
    assert len(cells) == len(peers.models) * len(peers.columns)
