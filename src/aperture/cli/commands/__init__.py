"""One module per ``aperture`` subcommand, each with ``prepare_parser`` and ``run``."""
