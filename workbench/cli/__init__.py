"""Command line interface (``workbench ...``)."""
