"""Inference forwards replayed from CUDA graphs, one graph per input signature.

At the batch sizes of detection and segmentation (1-8 images) a backbone's forward is
bound by the host: TinyViM-B at 2 x 800 x 1333 launches about 430 kernels that take
3.1 ms of GPU time in a 12 ms forward. :func:`enable_cuda_graphs` makes a module's
forward replay CUDA graphs instead, which removes the launches and leaves the kernels.

What runs from a graph: calls with one argument, a CUDA tensor or a (nested) tuple /
list of them (what necks and heads take), no gradients, the module in eval mode, outside
``torch.compile`` and outside another graph's capture. Every other call, and the first
call of each new signature (shapes, strides, dtypes, device, autocast state; it also
warms up cuDNN's and Triton's kernel choices), runs eagerly; the second call of a
signature captures its graph. Graphs share one memory pool; the outputs are
copied out of it, so a result stays valid after the next call. When the parameters or
buffers have moved to new storage (``.to()``, ``.cuda()``, ``.half()``) or changed in
place (``load_state_dict``: their version counters), the graphs are dropped and
captured again (modules may keep tensors derived from their parameters, such as the
Laplace mixer's folded scan projection, which a graph would replay stale). A module
whose submodules or buffers are replaced afterwards needs :func:`disable_cuda_graphs`
and :func:`enable_cuda_graphs` again.
"""
from typing import Any, Callable, Dict, Hashable, List, Optional, Set, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log


def _flatten(value: Any) -> Optional[List[torch.Tensor]]:
    """The tensors of a tensor or a nested tuple / list of tensors, else ``None``."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)) and value:
        parts = [_flatten(v) for v in value]
        return None if any(p is None for p in parts) else [t for p in parts for t in p]
    return None


def _signature(value: Any) -> Hashable:
    """What a graph is specific to: structure, shapes, strides, dtypes, devices."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.stride(), value.dtype, value.device
    return type(value).__name__, tuple(_signature(v) for v in value)


def _empty_like(value: Any) -> Any:
    """Uninitialised tensors of ``value``'s structure, shapes and strides."""
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                                   device=value.device)
    return type(value)(_empty_like(v) for v in value)


def _copy_out(value: Any) -> Any:
    """``value`` with every tensor cloned (tensors, tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_copy_out(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy_out(v) for k, v in value.items()}
    return value


def check_max_graphs(max_graphs: Any) -> int:
    """``max_graphs`` if it is a positive int, else a ``ValueError``."""
    if not isinstance(max_graphs, int) or max_graphs < 1:
        raise ValueError(f'max_graphs must be a positive int, got {max_graphs!r}')
    return max_graphs


def capture(step: Callable[[], Any], warmup: int = 1,
            pool: Optional[Any] = None) -> Tuple[torch.cuda.CUDAGraph, Any]:
    """Capture ``step()`` in a CUDA graph after ``warmup`` calls on a side stream (which
    create lazily allocated workspaces, e.g. cuBLAS', outside the graph); autocast's
    weight cache stays off throughout (a cached cast would be captured at an address
    the cache frees later). Returns the graph and ``step``'s captured output."""
    device = torch.cuda.current_device()
    no_cache = torch.autocast('cuda', dtype=torch.get_autocast_dtype('cuda'),
                              enabled=torch.is_autocast_enabled('cuda'), cache_enabled=False)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), no_cache:
        for _ in range(warmup):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode='thread_local'), no_cache:
        output = step()
    return graph, output


class _Graph:
    """One captured forward: a static input, the graph, its static output."""

    def __init__(self, forward: Callable[[Any], Any], x: Any, pool: Any) -> None:
        self.input = _empty_like(x)
        self._inputs = _flatten(self.input)
        self._load(_flatten(x))
        with torch.cuda.device(self._inputs[0].device):
            self.graph, self.output = capture(lambda: forward(self.input), pool=pool)

    def _load(self, tensors: List[torch.Tensor]) -> None:
        for static, value in zip(self._inputs, tensors):
            static.copy_(value)

    def __call__(self, tensors: List[torch.Tensor]) -> Any:
        """Replay on ``tensors`` (the flattened input of this graph's signature)."""
        self._load(tensors)
        self.graph.replay()
        return _copy_out(self.output)


class GraphedForward:
    """The forward of ``module`` that :func:`enable_cuda_graphs` installs (see the module
    docstring). ``graphs`` maps each captured signature to its graph."""

    def __init__(self, module: nn.Module, max_graphs: int = 16) -> None:
        self.module = module
        self.max_graphs = check_max_graphs(max_graphs)
        self.graphs: Dict[Hashable, _Graph] = {}
        self.seen: Set[Hashable] = set()
        self._pool: Optional[Any] = None
        self._tensors: List[torch.Tensor] = []
        self._state: List[Tuple[int, int]] = []
        self._full_logged = False

    def __reduce__(self) -> tuple:
        # copy.deepcopy / pickle: the copy starts without graphs
        return GraphedForward, (self.module, self.max_graphs)

    def eager(self, *args: Any, **kwargs: Any) -> Any:
        """The module's own forward."""
        return type(self.module).forward(self.module, *args, **kwargs)

    def _graph_input(self, args: tuple, kwargs: dict) -> Optional[List[torch.Tensor]]:
        """The call's input tensors if it may run from a graph, else ``None``."""
        tensors = _flatten(args[0]) if len(args) == 1 and not kwargs else None
        if (tensors is not None and all(t.is_cuda for t in tensors)
                and len({t.device for t in tensors}) == 1 and not self.module.training
                and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
                and not torch.cuda.is_current_stream_capturing()):
            return tensors
        return None

    def applies(self, args: tuple, kwargs: dict) -> bool:
        """Whether a call with these arguments may run from a graph."""
        return self._graph_input(args, kwargs) is not None

    def _tensor_state(self) -> List[Tuple[int, int]]:
        return [(t.data_ptr(), t._version) for t in self._tensors]

    def _drop_if_changed(self) -> None:
        if self.graphs and self._tensor_state() != self._state:
            print_log(f'{type(self.module).__name__}: parameters moved or changed, recapturing '
                      'its CUDA graphs', logger='current')
            self.graphs.clear()
            self.seen.clear()
            self._pool = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tensors = self._graph_input(args, kwargs)
        if tensors is None:
            return self.eager(*args, **kwargs)
        x = args[0]
        self._drop_if_changed()
        key = (_signature(x), torch.is_autocast_enabled('cuda'),
               torch.get_autocast_dtype('cuda'))
        graph = self.graphs.get(key)
        if graph is None:
            if key not in self.seen:
                self.seen.add(key)
                return self.eager(x)
            if len(self.graphs) >= self.max_graphs:
                if not self._full_logged:
                    print_log(f'{type(self.module).__name__}: {self.max_graphs} CUDA graphs '
                              'held (max_graphs); other input shapes run eagerly',
                              logger='current')
                    self._full_logged = True
                return self.eager(x)
            if not self.graphs:
                self._pool = torch.cuda.graph_pool_handle()
                self._tensors = [*self.module.parameters(), *self.module.buffers()]
                self._state = self._tensor_state()
            graph = self.graphs[key] = _Graph(self.eager, x, self._pool)
        return graph(tensors)


def enable_cuda_graphs(module: nn.Module, max_graphs: int = 16) -> nn.Module:
    """Replay ``module``'s inference forward from CUDA graphs (see the module docstring),
    at most ``max_graphs`` input signatures; in place. Returns ``module``."""
    if cuda_graphs_enabled(module):
        raise ValueError(f'{type(module).__name__} already replays CUDA graphs')
    if 'forward' in module.__dict__:
        raise ValueError(f'{type(module).__name__} has an instance-level forward; '
                         'CUDA graphs wrap the class forward only')
    module.forward = GraphedForward(module, max_graphs)
    return module


def disable_cuda_graphs(module: nn.Module) -> nn.Module:
    """Undo :func:`enable_cuda_graphs` (no-op where it was not enabled); frees the graphs."""
    if cuda_graphs_enabled(module):
        del module.__dict__['forward']
    return module


def cuda_graphs_enabled(module: nn.Module) -> bool:
    """Whether ``module`` replays CUDA graphs (:func:`enable_cuda_graphs`)."""
    return isinstance(module.__dict__.get('forward'), GraphedForward)
