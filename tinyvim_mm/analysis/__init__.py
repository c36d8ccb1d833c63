"""Model analysis: complexity (params, MACs with the scan counted) and feature spectra."""
from .complexity import classifier_complexity, config_complexity, count_macs, count_params

__all__ = ['classifier_complexity', 'config_complexity', 'count_macs', 'count_params']
