"""`python -m datagen ...`: the `datagen` command, where the environment's scripts folder is not on PATH."""

from datagen.cli import main

main()
