"""Print the README's model-zoo tables from the metafiles (their single source).

Example::

    python tools/misc/model_zoo.py          # Markdown, as in README.md
"""
import argparse
from pathlib import Path
from typing import List

import yaml

REPO = Path(__file__).resolve().parents[2]
INDEX = REPO / 'model-index.yml'


def _models() -> List[dict]:
    index = yaml.safe_load(INDEX.read_text())
    return [m for path in index['Import'] for m in yaml.safe_load((REPO / path).read_text())['Models']]


def _metric(model: dict, task: str, name: str) -> str:
    for result in model.get('Results') or []:
        if result['Task'] == task and name in (result.get('Metrics') or {}):
            return f'{result["Metrics"][name]:g}'
    return '—'


def _link(model: dict) -> str:
    return f'[{Path(model["Config"]).name}]({model["Config"]})'


def tables() -> str:
    """The three Markdown tables: ImageNet, COCO, ADE20K (paper metrics; full recipes)."""
    models = [m for m in _models() if 'toy' not in m['Name'] and 'examples' not in m['Config']]
    cls = [m for m in models if m['Name'].endswith('_in1k')]
    det = [m for m in models if m['Name'].startswith('mask_rcnn')]
    seg = [m for m in models if m['Name'].startswith('fpn')]
    out = ['**ImageNet-1k** (224², 300 epochs, hard distillation; top-1 of the paper)', '',
           '| model | params (M) | GMACs | top-1 (%) | config |', '|---|---|---|---|---|']
    for m in cls:
        meta = m['Metadata']
        out.append(f'| TinyViM-{m["Name"].split("_")[1].upper()} | {meta["Parameters"] / 1e6:.2f} '
                   f'| {meta["FLOPs"] / 1e9:.2f} | {_metric(m, "Image Classification", "Top 1 Accuracy")} '
                   f'| {_link(m)} |')
    out += ['', '**COCO val2017, Mask R-CNN 1x** (box / mask AP of the paper)', '',
            '| backbone | box AP | AP50 | AP75 | mask AP | AP50 | AP75 | config |',
            '|---|---|---|---|---|---|---|---|']
    for m in det:
        box = [_metric(m, 'Object Detection', k) for k in ('box AP', 'box AP50', 'box AP75')]
        mask = [_metric(m, 'Instance Segmentation', k) for k in ('mask AP', 'mask AP50', 'mask AP75')]
        out.append(f'| TinyViM-{m["Name"][-1].upper()} | ' + ' | '.join(box + mask) + f' | {_link(m)} |')
    out += ['', '**ADE20K val, Semantic FPN 40k** (mIoU of the paper)', '',
            '| backbone | mIoU (%) | config |', '|---|---|---|']
    for m in seg:
        arch = m['Name'].split('_')[2].upper()
        out.append(f'| TinyViM-{arch} | {_metric(m, "Semantic Segmentation", "mIoU")} | {_link(m)} |')
    return '\n'.join(out) + '\n'


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(tables(), end='')


if __name__ == '__main__':
    main()
