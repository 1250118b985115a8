"""The ``aperture`` command: ask an aggregator questions."""
