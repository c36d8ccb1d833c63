"""One-call generation of all toy datasets with size presets and caching.

``make_toy_data('data/toy')`` writes ``data/toy/imagenet``, ``data/toy/coco``
and ``data/toy/ade`` (layouts and config requirements are documented in
:mod:`.toy_imagenet`, :mod:`.toy_coco` and :mod:`.toy_ade`).  Each dataset
directory holds a marker file recording the generator version and parameters;
a dataset whose marker matches the request is reused, otherwise it is
regenerated.  Generation happens in a temporary sibling directory that is
renamed into place, so an interrupted run never leaves a half-written dataset
that looks complete.
"""
import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from ._shapes import ToyDatasetInfo
from .toy_ade import make_toy_ade
from .toy_coco import make_toy_coco
from .toy_imagenet import make_toy_imagenet

#: Bump when the generated content changes, so cached datasets regenerate.
TOY_DATA_VERSION = 1
TOY_TASKS = ('imagenet', 'coco', 'ade')
MARKER_FILE = '.toy_data.json'

#: Per-size, per-task keyword arguments of the ``make_toy_*`` functions.
TOY_SIZES: dict[str, dict[str, dict[str, int]]] = {
    'tiny':
    dict(
        imagenet=dict(train_per_class=4, val_per_class=2),
        coco=dict(num_train=8, num_val=4),
        ade=dict(num_train=8, num_val=4)),
    'default':
    dict(
        imagenet=dict(train_per_class=40, val_per_class=10),
        coco=dict(num_train=200, num_val=50),
        ade=dict(num_train=200, num_val=50)),
}

_GENERATORS = dict(
    imagenet=make_toy_imagenet, coco=make_toy_coco, ade=make_toy_ade)

logger = logging.getLogger(__name__)


def _generate(root: Path, task: str, params: dict) -> ToyDatasetInfo:
    """(Re)generate ``root / task`` unless its marker matches ``params``."""
    out = root / task
    marker = out / MARKER_FILE
    record = dict(version=TOY_DATA_VERSION, task=task, params=params)
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if {key: saved.get(key) for key in record} == record:
            logger.info('%s: up to date, reusing %s', task, out)
            info = saved['info']
            return ToyDatasetInfo(info['name'], str(out),
                                  tuple(info['classes']), info['num_samples'])
        logger.info('%s: parameters changed, regenerating %s', task, out)
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f'{out} exists but was not written by make_toy_data (no '
            f'{MARKER_FILE}); refusing to overwrite it.')

    tmp = root / f'.{task}.tmp-{uuid.uuid4().hex[:8]}'
    tmp.mkdir()
    try:
        info = replace(_GENERATORS[task](tmp, **params), root=str(out))
        (tmp / MARKER_FILE).write_text(
            json.dumps(dict(record, info=asdict(info)), indent=2))
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info('%s: wrote %s', task, out)
    return info


def make_toy_data(root: str | Path = 'data/toy',
                  tasks: Sequence[str] = TOY_TASKS,
                  size: str = 'default',
                  seed: int = 0) -> dict[str, ToyDatasetInfo]:
    """Generate (or reuse) the toy datasets ``root/<task>`` for ``tasks``.

    Args:
        root: Parent directory of the datasets.
        tasks: Any of ``'imagenet'``, ``'coco'``, ``'ade'``.
        size: A key of :data:`TOY_SIZES` (``'tiny'`` for tests, ``'default'``
            for quickstarts and short training runs).
        seed: Random seed; identical arguments give identical files.

    Returns:
        ``{task: ToyDatasetInfo}`` with the dataset root and class names.
    """
    unknown = set(tasks) - set(TOY_TASKS)
    if unknown:
        raise ValueError(f'Unknown tasks {sorted(unknown)}; '
                         f'choose from {TOY_TASKS}.')
    if size not in TOY_SIZES:
        raise ValueError(f'Unknown size {size!r}; choose from '
                         f'{tuple(TOY_SIZES)}.')
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return {
        task: _generate(root, task, dict(TOY_SIZES[size][task], seed=seed))
        for task in tasks
    }
