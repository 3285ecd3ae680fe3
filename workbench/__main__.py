"""``python -m workbench``: the command line (as the ``workbench`` command)."""

from .cli.main import main

main()
