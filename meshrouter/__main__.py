"""``python -m meshrouter``: the same command line as ``meshrouter``."""

from meshrouter.cli import main

if __name__ == "__main__":
    main(prog_name="meshrouter")
