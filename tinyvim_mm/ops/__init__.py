"""Custom operators."""
from .selective_scan import (BACKENDS, DEFAULT_CHUNK_SIZE, SelectiveScanCuda, available_backends,
                             resolve_backend, selective_scan, selective_scan_flops,
                             selective_scan_ref, selective_scan_torch)

__all__ = [
    'BACKENDS', 'DEFAULT_CHUNK_SIZE', 'SelectiveScanCuda', 'available_backends',
    'resolve_backend', 'selective_scan', 'selective_scan_flops', 'selective_scan_ref',
    'selective_scan_torch'
]
