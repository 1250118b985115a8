"""Aperture: a continuous eBPF profiler for Linux fleets."""

__version__ = "0.1.0"
