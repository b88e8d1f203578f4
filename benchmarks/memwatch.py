"""Peak memory of a process and all its descendants (e.g. `rnnlab lab` and its worker processes).

    rnnlab lab --data ../shared/data/imdb ... & python benchmarks/memwatch.py $! benchmarks/results/lab_memory.txt

Samples once a second, until the process ends, the sum of PSS (proportional set size: a page shared
by N processes counts 1/N in each, so the memory-mapped corpus and the libraries count once) and of
RSS (shared pages counted in every process) over the process tree, from /proc/<pid>/smaps_rollup
(Linux). Appends a line at each new peak and the final peak.
"""
import os
import time


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    kids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def tree(pid: int) -> list[int]:
    return [pid] + [q for k in children(pid) for q in tree(k)]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pid", type=int, help="the process to watch, with its descendants")
    ap.add_argument("out", help="the file to append the peaks to")
    args = ap.parse_args()
    root, path = args.pid, args.out
    peak = 0
    with open(path, "a") as out:
        while os.path.exists(f"/proc/{root}"):
            pss = rss = 0
            for p in tree(root):
                try:
                    with open(f"/proc/{p}/smaps_rollup") as f:
                        for line in f:
                            if line.startswith("Pss:"):
                                pss += int(line.split()[1])
                            elif line.startswith("Rss:"):
                                rss += int(line.split()[1])
                except OSError:
                    pass
            if pss > peak:
                peak = pss
                out.write(f"{time.strftime('%H:%M:%S')} peak PSS {pss / 1e6:.2f} GB RSS {rss / 1e6:.2f} GB\n")
                out.flush()
            time.sleep(1)
        out.write(f"final peak PSS {peak / 1e6:.2f} GB\n")


if __name__ == "__main__":
    main()
