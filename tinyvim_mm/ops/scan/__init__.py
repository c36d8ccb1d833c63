"""Selective-scan backends (being moved here from ``tinyvim_mm.ops.selective_scan``)."""
