"""``python -m meshrouter.cli``: the same as the ``meshrouter`` command."""

from meshrouter.cli import main

main(prog_name="meshrouter")
