"""Tensors derived from a module's weights for inference, kept between calls."""
from typing import Callable, Dict, Optional, Sequence, Tuple, TypeVar

import torch

T = TypeVar('T')


class DerivedWeights:
    """Tensors built from some parameters (a folded projection, transposed or cast weights),
    kept until one of those parameters changes: a new data pointer (``.to()``) or version
    (``load_state_dict``, any in-place write) or dtype. One entry per ``dtype`` asked for:
    a CUDA graph captured in one dtype replays that entry's addresses, which a call in
    another dtype must not free. While ``torch.compile`` traces, built on every call
    (pointers and versions are not for it to trace)."""

    def __init__(self) -> None:
        self._entries: Dict[torch.dtype, Tuple[tuple, object]] = {}

    def get(self, dtype: torch.dtype, sources: Sequence[Optional[torch.Tensor]],
            build: Callable[[], T]) -> T:
        """``build()``'s result for ``dtype``, built again only if a source changed."""
        if torch.compiler.is_compiling():
            return build()
        key = tuple(None if t is None else (t.data_ptr(), t._version, t.dtype)
                    for t in sources)
        entry = self._entries.get(dtype)
        if entry is None or entry[0] != key:
            entry = self._entries[dtype] = key, build()
        return entry[1]
