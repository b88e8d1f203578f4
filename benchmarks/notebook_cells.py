"""Run the walkthrough notebook's code cells in order in one Python process, for a machine without Jupyter.

    RNNLAB_NOTEBOOK_DATA=DIR RNNLAB_NOTEBOOK_OUT=OUT PYTHONPATH=src python benchmarks/notebook_cells.py

The lent GPU machine has no Jupyter and reaches no package index, so tests/test_notebook.py (nbclient, a
kernel) cannot run there; this runs the same cells as a kernel would, top to bottom, sharing one namespace.
Where IPython is not installed, the cell that imports `display`, `HTML` and `Image` from `IPython.display` gets
stand-ins instead that only check what they are given (an HTML string, an image file that exists). Each cell's wall time is printed; the
first cell that raises stops the run with its traceback and exit status 1. Used for the notebook's full mode on
an H200 (benchmarks/results/gpu_h200/).
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "rnnlab_walkthrough.ipynb"


IMPORT = "from IPython.display import HTML, Image, display"  # the one line of the notebook that needs IPython


class HTML:
    def __init__(self, data):
        assert isinstance(data, str) and data.strip(), "HTML of nothing"


class Image:
    def __init__(self, filename):
        assert Path(filename).is_file(), f"no image at {filename}"


def display(*objs):
    print("[display]", ", ".join(type(o).__name__ for o in objs))


def main() -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0],
                            epilog="RNNLAB_NOTEBOOK_DATA: the data folder the cells read (else the hub); "
                                   "RNNLAB_NOTEBOOK_OUT: where they write").parse_args()
    scope: dict = {"__name__": "__main__"}
    try:
        import IPython.display  # noqa: F401
        stand_in = False
    except ImportError:
        stand_in = True
        scope.update(HTML=HTML, Image=Image, display=display)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    if stand_in:
        assert sum(IMPORT in s for s in sources) == 1, f"the notebook's cells no longer have: {IMPORT}"
        sources = [s.replace(IMPORT, "pass  # " + IMPORT) for s in sources]
    start = time.perf_counter()
    for i, source in enumerate(sources, 1):
        t = time.perf_counter()
        print(f"=== cell {i} of {len(sources)}", flush=True)
        try:
            exec(compile(source, f"<cell {i}>", "exec"), scope)
        except BaseException:
            traceback.print_exc()
            print(f"=== cell {i} FAILED after {time.perf_counter() - t:.1f} s", flush=True)
            return 1
        print(f"=== cell {i} ok in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"=== all {len(sources)} cells ok in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
