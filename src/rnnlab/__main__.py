"""`python -m rnnlab ...` is the `rnnlab` command."""
from .cli import main

if __name__ == "__main__":  # not in the lab's spawned worker processes, which import this module
    main(prog_name="rnnlab")
