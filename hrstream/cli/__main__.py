"""``python -m hrstream.cli``: the ``hrstream`` command."""

from hrstream.cli import main

main()
