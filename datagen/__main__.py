"""`python -m datagen ...`: the `datagen` command, where the environment's scripts folder is not on PATH."""

from datagen.cli import main

if __name__ == "__main__":  # imported (a walk over datagen's modules), it runs nothing
    main()
