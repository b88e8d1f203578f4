"""`python -m rnnlab ...` is the `rnnlab` command."""
from .cli import main

main(prog_name="rnnlab")
