"""`rnnlab lab --quick` end to end, in real processes, on tiny synthetic data: every part written; a rerun
keeps every job and rewrites the same results; 2 worker processes, interrupted with Ctrl-C and resumed,
give the rows of one uninterrupted process (timings aside); other data or full mode reuse no job; an
--out that is a file is one line and exit 2.

Lab runs (the module fixture `runs`, two at a time): an uninterrupted quick lab with --jobs 1, then its
rerun, then two short runs on copies of its jobs (other --data; no --quick), stopped once they have
shown what they reuse; meanwhile a quick lab with --jobs 2 --threads 1, interrupted with SIGINT to its
process group (Ctrl-C) once 2 jobs are stored, then resumed by the same command.
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import rnnlab
from conftest import make_reviews, write_parquet_dir
from rnnlab import lab, report
from rnnlab.cli import main
from rnnlab.data import load_imdb
from rnnlab.experiments import EXPERIMENTS
from rnnlab.experiments.common import DATA, TIMING, _on_device
from rnnlab.prepare import subsample

SRC = Path(rnnlab.__file__).resolve().parents[1]
PARTS = ["seed", *EXPERIMENTS]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTCOMES = {"holds", "does not hold", "inconclusive"}
LOG_PREFIXES = ("loading data", "[lab] ", "[jobs] ")  # what a lab logs on stderr while it works


# --- running `rnnlab lab` in a process of its own -----------------------------------------------------

@dataclass
class Done:
    rc: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def _as_in_a_terminal() -> None:
    """Ctrl-C's default disposition: a test suite run in the background by a script inherits SIGINT ignored
    (a shell without job control does that to its background commands), and Python then keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Lab:
    """`python -m rnnlab.cli ARGS` in its own process group (as a terminal runs it), output to files."""

    def __init__(self, workdir: Path, name: str, args: list[str]):
        workdir.mkdir(parents=True, exist_ok=True)
        self.out, self.err = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
        env = {k: v for k, v in os.environ.items() if k not in ("RNNLAB_DATA", "RNNLAB_DEBUG")}
        env.update(PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]), HF_HUB_OFFLINE="1",
                   HF_DATASETS_OFFLINE="1", RNNLAB_CACHE=str(workdir.parent / "cache"))
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", *args], stdout=o, stderr=e, env=env,
                                         cwd=workdir, stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_as_in_a_terminal)

    def stderr(self) -> str:
        return self.err.read_text()

    def until(self, condition, timeout: float = 300) -> bool:
        """Wait until condition() holds: True; False if the lab ends or the time runs out first."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)  # the whole group, as Ctrl-C in a terminal does

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def wait(self, timeout: float = 600) -> Done:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the lab did not end within {timeout} s:\n{self.stderr()}")
        return Done(rc, self.out.read_text(), self.stderr())


def lab_args(data: Path, out: Path, *extra: str, quick: bool = True) -> list[str]:
    return ["lab", *(["--quick"] if quick else []), "--data", str(data), "--out", str(out), "--device", "cpu", *extra]


def job_files(out: Path) -> dict[str, tuple[bytes, int]]:
    return {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted((out / "jobs").glob("*.json"))}


def results(out: Path) -> dict[str, bytes]:
    return {p: (out / p / "results.csv").read_bytes() for p in PARTS}


def untimed_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["metric"] not in TIMING]


def stored(f: Path) -> dict:
    return json.loads(f.read_text())


def not_logging(lines: list[str]) -> list[str]:
    """The lines that are not the lab's progress log."""
    return [line for line in lines if not line.startswith(LOG_PREFIXES) and "jobs already done, read from" not in line]


# --- the runs ---------------------------------------------------------------------------------------
# Two labs at a time (a --jobs 1 lab leaves the second core idle): the uninterrupted --jobs 1 lab, then
# its rerun and the two short runs on copies of its jobs, while the --jobs 2 lab is interrupted and resumed.

@dataclass
class Runs:
    first: Done  # quick, --jobs 1, uninterrupted, into first_out
    first_out: Path
    first_files: dict  # its job files {name: (bytes, mtime)} and results.csv files, right after it ended
    first_results: dict
    first_record: dict  # its lab.json
    rerun: Done  # the same command again
    stopped: Done | None  # quick, --jobs 2 --threads 1 into two_out, Ctrl-C once 2 jobs are stored
    two_out: Path
    stored_at_stop: dict  # its job files then
    resumed: Done  # the same command again
    other: Done | None  # on a copy of first's jobs, --data OTHER; Ctrl-C once it has stored a job
    other_out: Path
    other_fp: str  # the other data's fingerprint
    other_files: dict  # {name: bytes} then
    full: str  # on a copy of first's jobs, without --quick: its log until its jobs went to the workers
    full_files: dict  # the job files then (it was killed there)
    seeds: Done  # on a copy of first's jobs, --seeds 5
    seeds_out: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data) -> Runs:
    base = tmp_path_factory.mktemp("lab")
    other_data = write_parquet_dir(base / "other-imdb", make_reviews(240, seed=11), make_reviews(120, seed=12))
    other_fp = load_imdb(other_data).fingerprint()
    logs = base / "logs"
    first_out, two_out, other_out, full_out, seeds_out = (base / n for n in ("first", "two", "other", "full", "seeds"))
    two_args = lab_args(tiny_data, two_out, "--jobs", "2", "--threads", "1")
    first = Lab(logs, "first", lab_args(tiny_data, first_out, "--jobs", "1"))
    two = Lab(logs, "interrupted", two_args)
    resumed = None
    try:
        stopped = None
        if two.until(lambda: len(list((two_out / "jobs").glob("*.json"))) >= 2):
            two.signal(signal.SIGINT)
            stopped = two.wait(120)
        else:
            two.kill()
        stored_at_stop = job_files(two_out)
        resumed = Lab(logs, "resumed", two_args)
        done = first.wait()
        assert done.rc == 0, f"the first lab failed:\n{done.stderr}"
        first_files, first_results = job_files(first_out), results(first_out)
        first_record = json.loads((first_out / "lab.json").read_text())
        time.sleep(0.05)  # a rewritten file would have another mtime
        rerun = Lab(logs, "rerun", lab_args(tiny_data, first_out, "--jobs", "1")).wait()

        shutil.copytree(first_out / "jobs", other_out / "jobs")
        run = Lab(logs, "other", lab_args(other_data, other_out, "--jobs", "1"))
        other = None
        if run.until(lambda: any(stored(f)["data"] == other_fp for f in (other_out / "jobs").glob("*.json"))):
            run.signal(signal.SIGINT)
            other = run.wait(120)
        run.kill()
        other_files = {f.name: f.read_bytes() for f in (other_out / "jobs").glob("*.json")}

        shutil.copytree(first_out / "jobs", full_out / "jobs")
        run = Lab(logs, "full", lab_args(tiny_data, full_out, "--jobs", "2", "--threads", "1", quick=False))
        run.until(lambda: "worker processes" in run.stderr())
        run.kill()
        shutil.copytree(first_out / "jobs", seeds_out / "jobs")
        seeds = Lab(logs, "seeds", lab_args(tiny_data, seeds_out, "--jobs", "1", "--seeds", "5")).wait()
        return Runs(done, first_out, first_files, first_results, first_record, rerun, stopped, two_out, stored_at_stop,
                    resumed.wait(), other, other_out, other_fp, other_files, run.stderr(), job_files(full_out),
                    seeds, seeds_out)
    finally:
        for p in (first, two, resumed):
            if p is not None and p.proc.poll() is None:
                p.kill()


# --- one uninterrupted lab ----------------------------------------------------------------------------

def test_quick_lab_writes_every_part(runs, tiny_data):
    out, files = runs.first_out, runs.first_files
    result = json.loads(runs.first.stdout.strip().splitlines()[-1])
    assert result["mode"] == "quick" and result["report"] == str(out / "report.html")
    done = next(line for line in runs.first.stderr.splitlines() if line.startswith("[lab] done in"))
    assert "(--quick: a smoke test on little data, not evidence)" in done, done  # a refutation in it is no finding
    assert set(result["outcomes"]) == set(EXPERIMENTS) and set(result["outcomes"].values()) <= OUTCOMES
    for name in EXPERIMENTS:
        d = out / name
        v = json.loads((d / "verdict.json").read_text())
        assert v["experiment"] == name and v["mode"] == "quick" and v["outcome"] == result["outcomes"][name]
        assert v["device"] == "cpu" and v["workers"] == 1 and v["threads_per_job"] == 1
        header, *rows = (d / "results.csv").read_text().splitlines()
        assert {"part", "metric", "value"} <= set(header.split(",")) and rows, name
        assert v["results_sha256"] == hashlib.sha256((d / "results.csv").read_bytes()).hexdigest(), name
        assert (d / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert b"<svg" in (d / f"{name}.svg").read_bytes()[:2000]
    table = json.loads((out / "compare" / "verdict.json").read_text())["numbers"]["table"]
    with (out / "compare" / "table.csv").open() as f:  # the report's table names it: it must be there
        assert [r["model"] for r in csv.DictReader(f)] == [r["model"] for r in table] and len(table) >= 5
    seed = out / "seed"
    summary = json.loads((seed / "summary.json").read_text())
    assert summary["epochs"] == lab.QUICK_SEED["epochs"] and len(summary["test_acc_by_seed"]) == 1
    assert summary["train_reviews"] == len(load_imdb(tiny_data).train) < lab.QUICK_SEED["n_train"]  # all it had
    assert f"{summary['train_reviews']:,} training reviews" in (out / "report.md").read_text()
    assert {r["metric"] for r in untimed_rows(seed / "results.csv")} >= {"test_acc", "train_loss"}
    assert summary["results_sha256"] == hashlib.sha256((seed / "results.csv").read_bytes()).hexdigest()
    assert (seed / "seed.png").read_bytes()[:8] == PNG_MAGIC and b"<svg" in (seed / "seed.svg").read_bytes()[:2000]
    record = runs.first_record
    assert record["mode"] == "quick" and record["workers"] == 1 and record["threads_per_job"] == 1
    assert set(record["phases_seconds"]) == {"jobs", "experiments", "explain"}
    assert all(v >= 0 for v in record["phases_seconds"].values()) and record["phases_seconds"]["jobs"] > 0
    assert record["jobs"] == len(files) > 10
    assert set(record["job_seconds_by_experiment"]) == set(EXPERIMENTS)  # each read its jobs (--device cpu):
    assert all(s > 0 for s in record["job_seconds_by_experiment"].values())  # were 0 for all but tf-idf's
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "report.md").read_text().startswith("# rnnlab report")
    fp = load_imdb(tiny_data).fingerprint()
    assert all(stored(out / "jobs" / name)["data"] == fp for name in files)
    assert not list(out.rglob(".*.tmp"))


def test_the_labs_own_report_is_what_rnnlab_report_renders_from_its_files(runs):
    """One command regenerates what is published: the lab's pages show lab.json as saved (rounded times,
    the report's own phase), so re-rendering them from the files changes no byte."""
    out = runs.first_out  # the pages name the lab they were rendered from: render beside the lab's own
    again = {"report.md": out / "again.md", "report.html": out / "again.html"}
    try:
        report.write_report(out, again["report.html"], markdown=again["report.md"])
        for page, other in again.items():  # the HTML says when it was rendered, to the minute
            when = re.compile(rb"Rendered \d{4}-\d\d-\d\d \d\d:\d\d ")
            assert when.sub(b"", other.read_bytes()) == when.sub(b"", (out / page).read_bytes()), page
    finally:
        for other in again.values():
            other.unlink(missing_ok=True)


def test_the_logged_job_count_is_the_number_of_jobs_run(runs):
    """A model several experiments need is one job: the log's count is of distinct jobs, as lab.json's."""
    n = len(runs.first_files)
    (line,) = [x for x in runs.first.lines if x.startswith("[lab] ") and " jobs: " in x]
    assert f"[jobs] {n}/{n} " in runs.first.stderr
    assert line.startswith(f"[lab] {n} jobs: "), (line, n)
    assert runs.first_record["jobs"] == runs.first_record["jobs_run"] == n


def test_a_resumed_lab_says_how_many_jobs_an_earlier_run_finished(runs):
    """A rerun's lab.json said "wall time: jobs 0.2 s" with nothing to tell that every job had run before (session
    59's second fault hunt): it records the jobs it ran, and the report names the others."""
    n = len(runs.first_files)
    record = json.loads((runs.first_out / "lab.json").read_text())  # the rerun's, which ran nothing
    assert (record["jobs"], record["jobs_run"]) == (n, 0)
    assert (f"{n} on 1 worker(s) x 1 thread(s); {n} of them finished by an earlier run (read from the job store), so "
            "not in the wall time below") in (runs.first_out / "report.md").read_text()
    resumed = json.loads((runs.two_out / "lab.json").read_text())
    assert (resumed["jobs"], resumed["jobs_run"]) == (n, n - len(runs.stored_at_stop))


# --- its rerun ----------------------------------------------------------------------------------------

def test_rerun_keeps_every_job(runs):
    n = len(runs.first_files)
    assert runs.rerun.rc == 0, runs.rerun.stderr
    assert f"{n} of {n} jobs already done, read from {runs.first_out / 'jobs'}" in runs.rerun.lines
    assert not [line for line in runs.rerun.lines if line.startswith("[jobs] ")]  # nothing ran
    assert job_files(runs.first_out) == runs.first_files  # same bytes, same mtimes


def test_rerun_rewrites_byte_identical_results(runs):
    assert runs.rerun.rc == 0, runs.rerun.stderr
    assert results(runs.first_out) == runs.first_results


# --- two workers, interrupted, resumed -------------------------------------------------------------------

def test_ctrl_c_exits_130_with_one_line_saying_how_to_resume(runs):
    stopped = runs.stopped
    assert stopped is not None, "the --jobs 2 lab ended before it had stored 2 jobs"
    assert stopped.rc == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr
    (line,) = not_logging(stopped.lines)
    assert line.startswith("interrupted (Ctrl-C); ") and f"finished jobs are kept under {runs.two_out}" in line
    assert line.endswith("rerun the same command to resume")
    assert len(runs.stored_at_stop) >= 2 and not list((runs.two_out / "jobs").glob(".*.tmp"))


def test_the_resumed_lab_keeps_the_jobs_stored_before_ctrl_c(runs):
    kept, resumed, out = runs.stored_at_stop, runs.resumed, runs.two_out
    assert resumed.rc == 0, resumed.stderr
    n = len(runs.first_files)
    assert len(kept) >= 2 and f"{len(kept)} of {n} jobs already done, read from {out / 'jobs'}" in resumed.lines
    now = job_files(out)
    assert {k: now[k] for k in kept} == kept and len(now) == n
    record = json.loads((out / "lab.json").read_text())
    assert record["workers"] == 2 and record["threads_per_job"] == 1


@pytest.mark.parametrize("part", PARTS)
def test_two_workers_interrupted_and_resumed_give_the_rows_of_one_uninterrupted_process(runs, part):
    assert runs.resumed.rc == 0, runs.resumed.stderr
    a = untimed_rows(runs.first_out / part / "results.csv")
    b = untimed_rows(runs.two_out / part / "results.csv")
    assert len(a) >= 5 and a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]


# --- other data, full mode: nothing reused ---------------------------------------------------------------

def _untimed_rows_of(blob: bytes) -> list[dict]:
    return [r for r in json.loads(blob)["rows"] if r.get("metric") not in TIMING]


def test_other_data_reuses_no_job(runs):
    done, files, now = runs.other, runs.first_files, runs.other_files
    assert done is not None, "the lab on other data stored no job run on it"
    assert not [line for line in done.lines if "jobs already done, read from" in line], done.stderr
    assert done.rc == 130 and not_logging(done.lines)[-1].endswith("rerun the same command to resume"), done.stderr
    assert set(now) == set(files)  # the same jobs (keys), run again on the other data
    rerun = {n for n, blob in now.items() if json.loads(blob)["data"] == runs.other_fp}
    assert rerun and all(now[n] == files[n][0] for n in set(now) - rerun)  # the others: untouched so far
    for n in rerun:  # its rows are the other reviews'
        assert _untimed_rows_of(now[n]) != _untimed_rows_of(files[n][0]), n


def test_full_mode_reuses_no_quick_job(runs, tiny_data):
    log = runs.full
    full = lab.exercise_jobs("full", "cpu") + ([lab.baseline_job(str(tiny_data))] if lab.BASELINE.exists() else [])
    full += [_on_device(j, "cpu") for e in EXPERIMENTS.values() for _, j in e.module().jobs("full")]
    parallel, alone = {j.key for j in full if not j.exclusive}, {j.key for j in full if j.exclusive}
    assert "jobs already done, read from" not in log, log
    assert len(alone) > 0 and f"[lab] {len(parallel) + len(alone)} jobs: " in log  # the same count, both lines
    assert (f"[jobs] {len(parallel)} jobs on 2 worker processes x 1 thread(s), then {len(alone)} timing(s) alone"
            in log.splitlines()), log
    assert {n: b for n, (b, _) in runs.full_files.items()} == {n: b for n, (b, _) in runs.first_files.items()}


def test_other_seeds_rerun_every_seeded_job_and_keep_the_first_seeds_models(runs, tiny_data):
    done, out = runs.seeds, runs.seeds_out
    assert done.rc == 0, done.stderr
    assert json.loads((out / "lab.json").read_text())["seeds"] == [5]
    for part in PARTS:  # every row of seed 5 (or of no seed: timings, the baseline), none of the stored seed 0's
        with open(out / part / "results.csv", newline="") as f:
            seeds = {r.get("seed", "") for r in csv.DictReader(f)}
        assert seeds <= {"5", "5.0", ""} and (part == "serial" or seeds & {"5", "5.0"}), (part, seeds)
        if part not in ("seed", "serial"):  # serial's timings have no seed
            assert json.loads((out / part / "verdict.json").read_text())["settings"]["seeds"] == [5], part
    picks = json.loads((out / "explain" / "picks.json").read_text())
    assert picks["seed"] == 5 and any(p.get("explanations") for p in picks["picks"]), picks  # seed 5's kept models
    ds = load_imdb(tiny_data)
    subset = subsample(ds, **DATA["quick"]).test
    for p in (p for p in picks["picks"] if p["index"] is not None):  # each review named by its place in the data
        assert ds.test.texts[p["data_index"]] == subset.texts[p["index"]] and p["files"]["html"] == f"review-{p['data_index']}.html"
    timings = {j.key for e in EXPERIMENTS.values() for _, j in e.module().jobs("quick") if j.exclusive}
    reused = [line for line in done.lines if "jobs already done, read from" in line]
    assert reused and reused[0].startswith(f"{len(timings)} of "), done.stderr  # only the seed-free timings
    report = (out / "report.md").read_text()
    assert "| 5 | " in report.split("## The notebook's exercise")[1].split("##")[0], report  # the exercise's seed
    assert "| seeds | 5 |" in report, report


def test_the_report_names_the_runs_that_explain_each_review_again(runs):
    """picks.json names the lab's kept models; the report's "To read it again" line is a command that runs as it
    stands and gives the explanations the lab saved."""
    out = runs.first_out
    picks = json.loads((out / "explain" / "picks.json").read_text())
    assert list(picks["runs"]) == picks["models"] == list(lab.EXPLAINED)
    assert all((out / r / "model.safetensors").is_file() and r.startswith("jobs/") for r in picks["runs"].values())
    done = [p for p in picks["picks"] if p["index"] is not None]
    assert done, picks
    for p in done:
        page = html.unescape((out / "report.html").read_text())
        command = shlex.split(re.search(rf"To read it again: (rnnlab explain .*? --review {p['data_index']} --data "
                                        r"[^ <]+)", page).group(1))
        assert command[:2] == ["rnnlab", "explain"] and command[2:5] == [str(out / r) for r in picks["runs"].values()]
        r = CliRunner().invoke(main, [*command[1:], "--json"])
        assert r.exit_code == 0, r.output
        again = json.loads(r.stdout)["runs"]
        assert [e["opinion"] for e in again] == [e["opinion"] for e in p["explanations"]]


def test_a_lab_whose_parts_ran_on_other_seeds_is_flagged_and_kept_out_of_the_readme(runs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.README_START}\nold\n{report.README_END}\n")
    mixed = tmp_path / "mixed"  # a --seeds 5 lab whose compare/ was rerun on seed 0
    shutil.copytree(runs.seeds_out, mixed, ignore=shutil.ignore_patterns("jobs"))
    shutil.rmtree(mixed / "compare")
    shutil.copytree(runs.first_out / "compare", mixed / "compare")
    r = CliRunner().invoke(main, ["report", str(mixed)])
    assert r.exit_code == 0 and "warning: The parts of this lab ran on different seeds" in r.output, r.output
    assert "compare 0" in r.output and "lab.json 5" in r.output, r.output
    assert "Warning: parts from different seeds" in (mixed / "report.md").read_text()
    r = CliRunner().invoke(main, ["report", str(mixed), "--readme", str(readme)])
    assert r.exit_code == 2 and "different seeds" in r.output and "old" in readme.read_text(), r.output
    full = tmp_path / "full"  # the --seeds 5 lab as if it were a full one: not the README's evidence either
    shutil.copytree(runs.seeds_out, full, ignore=shutil.ignore_patterns("jobs"))
    for f in full.rglob("*.json"):
        f.write_text(f.read_text().replace('"mode": "quick"', '"mode": "full"'))
    r = CliRunner().invoke(main, ["report", str(full), "--readme", str(readme)])
    assert r.exit_code == 2 and "ran on seeds 5" in r.output and "old" in readme.read_text(), r.output


def test_a_lab_whose_parts_ran_on_other_data_is_flagged_and_kept_out_of_the_readme(runs, tmp_path, tiny_data):
    fp = load_imdb(tiny_data).fingerprint()
    for part in ("seed/summary.json", "serial/verdict.json", "explain/picks.json", "lab.json"):
        assert json.loads((runs.first_out / part).read_text())["data_fingerprint"] == fp, part
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.README_START}\nold\n{report.README_END}\n")
    mixed = tmp_path / "mixed"  # serial/ rerun into this folder with another --data
    shutil.copytree(runs.first_out, mixed, ignore=shutil.ignore_patterns("jobs"))
    verdict = mixed / "serial" / "verdict.json"
    verdict.write_text(verdict.read_text().replace(fp, "0" * 64))
    r = CliRunner().invoke(main, ["report", str(mixed)])
    assert r.exit_code == 0 and "warning: The parts of this lab ran on different data" in r.output, r.output
    assert f"serial on data {'0' * 12}" in r.output and fp[:12] in r.output, r.output
    assert "Warning: parts from different data" in (mixed / "report.md").read_text()
    r = CliRunner().invoke(main, ["report", str(mixed), "--readme", str(readme)])
    assert r.exit_code == 2 and "different data" in r.output and "old" in readme.read_text(), r.output
    for f in mixed.rglob("*.json"):  # a lab made before parts recorded their data: nothing to compare, no warning
        f.write_text(re.sub(r'"data_fingerprint": "[0-9a-f]+",\s*', "", f.read_text()))
    assert "data_fingerprint" not in verdict.read_text()
    r = CliRunner().invoke(main, ["report", str(mixed)])
    assert r.exit_code == 0 and "different data" not in r.output, r.output


def test_seeds_that_are_not_distinct_non_negative_integers_are_refused(tmp_path, tiny_data):
    for bad in ("3,x", "1,1", "-1", "", str(2**31), "1_0", "\uff13"):
        r = CliRunner().invoke(main, ["shortfall", "serial", "--quick", "--seeds", bad, "--data", str(tiny_data),
                                      "--out", str(tmp_path / "s")])
        assert r.exit_code == 2 and "--seeds" in r.output, (bad, r.output)
        assert not (tmp_path / "s").exists()


def test_seeds_used_swaps_every_jobs_seeds_and_restores_the_labs_own(tiny_data):
    from rnnlab.experiments.common import SEEDS, seeds_used

    def seeds_of(mode):
        jobs = lab.exercise_jobs(mode) + [j for e in EXPERIMENTS.values() for _, j in e.module().jobs(mode)]
        return {j.args["cfg"]["seed"] for j in jobs if "cfg" in j.args and not j.exclusive}, \
            {j.args["cfg"]["seed"] for j in jobs if j.args.get("keep")}

    assert seeds_of("full") == ({0, 1, 2}, {0})
    with pytest.raises(RuntimeError), seeds_used("full", (7, 3)):
        assert seeds_of("full") == ({7, 3}, {7}) and seeds_of("quick") == ({0}, {0})
        raise RuntimeError
    assert SEEDS == {"full": (0, 1, 2), "quick": (0,)} and seeds_of("full") == ({0, 1, 2}, {0})


# --- bad --out ------------------------------------------------------------------------------------------

def test_out_that_is_a_file_is_one_line_and_exit_2(tmp_path, tiny_data):
    f = tmp_path / "results.txt"
    f.write_text("not a directory")
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(f), "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    (line,) = r.stderr.splitlines()
    assert line.startswith("Error: ") and str(f) in line and "is a file" in line, line
    assert r.stdout == "" and f.read_text() == "not a directory"


@pytest.mark.parametrize("target", ["loop", "gone"])
def test_out_that_is_a_symbolic_link_to_nowhere_is_one_line_and_exit_2(tmp_path, tiny_data, target):
    """A link loop, or a link whose target is gone: mkdir said only 'File exists'."""
    out = tmp_path / "results"
    out.symlink_to(out if target == "loop" else tmp_path / "gone")
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("loading data")]
    assert errors == [f"Error: cannot write {out}: a symbolic link to nowhere (a loop, or its target is gone)"]


def test_markdown_that_cannot_be_written_is_refused_before_any_work(tmp_path, tiny_data):
    (tmp_path / "file").write_text("x")
    md = tmp_path / "file" / "lab.md"  # a parent path is a file
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(tmp_path / "lab"),
                                  "--markdown", str(md), "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    (line,) = r.stderr.splitlines()
    assert line == f"Error: cannot write {md}: {md.parent} is a file, not a directory", line
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("command", [["lab"], ["compare"], ["shortfall", "serial"]])
@pytest.mark.parametrize("holds", ["a training run", "data"])
def test_an_out_that_holds_a_run_or_data_is_refused_before_any_work(tmp_path, tiny_data, holds, command):
    """compare and shortfall wrote jobs/ and their results into a run or beside train.parquet; lab refused."""
    out = tmp_path / "there"
    out.mkdir()
    names = ("config.json", "vocab.json") if holds == "a training run" else ("train.parquet",)
    for n in names:
        (out / n).write_text("{}")
    before = sorted(p.name for p in out.iterdir())
    r = CliRunner().invoke(main, [*command, "--quick", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    (line,) = r.stderr.splitlines()
    assert f"holds {'a training run' if holds == 'a training run' else 'data'}" in line, line
    assert sorted(p.name for p in out.iterdir()) == before


def test_markdown_onto_the_labs_own_html_report_is_refused_before_any_work(tmp_path, tiny_data):
    out = tmp_path / "lab"
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(out),
                                  "--markdown", str(out / "report.html"), "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    (line,) = r.stderr.splitlines()
    assert "the lab writes its HTML report there" in line, line
    assert not (out / "jobs").exists()  # no job ran


# --- what lab.json records ------------------------------------------------------------------------------

def test_the_environment_is_recorded_before_the_lab_writes_anything(tmp_path, tiny_data, monkeypatch):
    """Publishing runs the lab into the checkout's own docs/lab: an environment read after the lab has
    rewritten those files would call the published run's code dirty (git_dirty) for its own outputs."""

    class Recorded(Exception):
        pass

    out = tmp_path / "lab"

    def environment():
        assert [p.name for p in out.iterdir()] == [], "the lab wrote before recording the environment"
        raise Recorded

    def run(*args, **kwargs):
        raise AssertionError("a job ran before the environment was recorded")

    monkeypatch.setattr(lab, "environment", environment)
    monkeypatch.setattr(lab.Runner, "run", run)
    with pytest.raises(Recorded):
        lab.run_lab(load_imdb(tiny_data), out, quick=True, device="cpu", log=lambda *a: None)


def test_every_part_records_the_environment_the_lab_read_before_writing(runs, tiny_data, tmp_path, monkeypatch):
    """Each verdict.json's hardware is lab.json's environment: a part that read its own would see the parts written
    before it as uncommitted changes (the published report said "uncommitted changes" under every part)."""
    from rnnlab.experiments import common

    out = tmp_path / "lab"
    shutil.copytree(runs.first_out / "jobs", out / "jobs")  # every job done: the lab only concludes

    def environment():  # "dirty" once the lab has written anything besides its job store
        return {"git_commit": "c0ffee", "git_dirty": any(p.name != "jobs" for p in out.iterdir())}

    monkeypatch.setattr(lab, "environment", environment)
    monkeypatch.setattr(common, "environment", environment)
    lab.run_lab(load_imdb(tiny_data), out, quick=True, device="cpu", log=lambda *a: None)
    env = json.loads((out / "lab.json").read_text())["environment"]
    assert env == {"git_commit": "c0ffee", "git_dirty": False}
    assert all(json.loads((out / n / "verdict.json").read_text())["hardware"] == env for n in EXPERIMENTS)


def test_a_lab_that_cannot_make_its_out_folder_names_it_and_where(tmp_path, tiny_data, monkeypatch):
    """`lab` without --out in a read-only folder said "cannot write .", not naming results/lab."""
    real = os.access
    monkeypatch.setattr(lab.os, "access", lambda p, mode: Path(p) != tmp_path and real(p, mode))  # read-only
    out = tmp_path / "results" / "lab"
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1] == (
        f"Error: cannot write {out} (in {tmp_path}): permission denied or read-only"), r.output
    assert not (tmp_path / "results").exists()


def test_a_lab_into_a_folder_it_cannot_write_is_refused_before_any_job_trains(tmp_path, tiny_data, monkeypatch):
    out = tmp_path / "lab"
    (out / "jobs").mkdir(parents=True)
    real = os.access
    monkeypatch.setattr(lab.os, "access", lambda p, mode: Path(p) != out / "jobs" and real(p, mode))  # read-only
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.splitlines()[-1] == f"Error: cannot write {out / 'jobs'}: permission denied or read-only", r.output
    assert "[jobs]" not in r.output and list((out / "jobs").iterdir()) == []  # it trained a job first, then failed


def test_a_second_lab_into_a_held_out_fails_at_once_and_a_killed_labs_leftovers_are_deleted(tmp_path, tiny_data):
    from rnnlab.io import exclusive

    out = tmp_path / "lab"
    (out / "explain").mkdir(parents=True)
    leftover = out / "explain" / ".picks.json.abc12_3d.tmp"  # a write a SIGKILL cut short
    leftover.write_bytes(b"x" * 1000)
    mine = [out / ".notes.tmp", out / ".vim.tmp" / "file", out / ".drafts.abc12345.swp.tmp",  # a user's, in --out
            out / ".notes.backup01.tmp", out / ".draft.20240101.tmp", out / ".vim.tmp.swapfile.tmp" / "f"]
    (out / ".lab.json.k3_9a0zq.tmp").write_text("{")  # the lab's own in OUT: a kill cut its record's write short
    for f in mine:
        f.parent.mkdir(exist_ok=True)
        f.write_text("the user's own")
    leftover_dir = out / "seed" / ".run.abcd_123.tmp"  # a folder's temporary (mkdtemp) in a folder the lab owns
    (leftover_dir / "sub").mkdir(parents=True)
    with exclusive(out, "held"):  # another lab writing here
        r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1] == (
        f"Error: {out}: another rnnlab lab, shortfall or compare is writing here; wait for it or stop it"), r.output
    assert leftover.exists() and not (out / "jobs").exists()  # nothing touched while the other one holds it
    (tmp_path / ".elsewhere.tmp").write_text("not the lab's")
    r = CliRunner().invoke(main, ["shortfall", "serial", "--quick", "--data", str(tiny_data), "--out", str(out),
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert not leftover.exists() and not leftover_dir.exists() and (tmp_path / ".elsewhere.tmp").exists()
    assert not (out / ".lab.json.k3_9a0zq.tmp").exists()
    assert all(f.read_text() == "the user's own" for f in mine)  # before, every .*.tmp in --out went, folders too


def test_the_explained_reviews_are_picked_from_the_labs_test_subset_and_named_by_their_place_in_the_data(
        tmp_path, monkeypatch):
    """A test split larger than the quick lab's subset: pick_reviews gets the comparison's RNN and LSTM and the
    subset (balanced on the test labels), and picks.json names each pick's place in the whole split."""
    import rnnlab.explain
    from rnnlab.config import PRESETS, with_overrides
    from rnnlab.experiments.common import fit
    from rnnlab.prepare import balanced_indices

    ds = load_imdb(write_parquet_dir(tmp_path / "imdb", make_reviews(200, seed=1), make_reviews(800, seed=2)))
    store = tmp_path / "jobs"
    for name in lab.EXPLAINED:  # the kept models explain_reviews looks for (never loaded: load_run is stubbed)
        key = _on_device(fit(with_overrides(PRESETS[name], {"seed": lab.SEEDS["quick"][0]}), "quick"), "cpu").key
        (store / key).mkdir(parents=True)
        (store / key / "model.safetensors").write_bytes(b"")
    seen = {}

    def pick(split, rnn, lstm, **kw):
        seen.update(split=split, rnn=rnn.name, lstm=lstm.name)
        return [{"rule": "short", "criterion": "c", "index": 3, "n_tokens": 5, "label": int(split.labels[3])}]

    monkeypatch.setattr(rnnlab.explain, "load_run", lambda path, device="cpu": type("R", (), {"name": None})())
    monkeypatch.setattr(rnnlab.explain, "pick_reviews", pick)
    monkeypatch.setattr(rnnlab.explain, "explain_runs", lambda runs, text, **kw: [])
    for f in ("write_html", "write_png"):
        monkeypatch.setattr(rnnlab.explain, f, lambda exps, path, **kw: None)
    lab.explain_reviews(tmp_path / "explain", ds, store, "quick", "cpu", log=lambda s: None)
    places = balanced_indices(ds.test.labels, DATA["quick"]["n_test"])
    assert places is not None and len(places) < len(ds.test)
    assert (seen["rnn"], seen["lstm"]) == ("rnn", "lstm")
    assert seen["split"].texts == ds.test.subset(places).texts
    (p,) = json.loads((tmp_path / "explain" / "picks.json").read_text())["picks"]
    assert p["data_index"] == int(places[3]) != 3 and ds.test.texts[p["data_index"]] == seen["split"].texts[3]


def test_each_experiments_job_seconds_are_the_sum_of_its_jobs_records(tmp_path):
    store = tmp_path / "jobs"
    store.mkdir()
    want = {}
    for e in EXPERIMENTS.values():
        want[e.name] = 0.0
        for k, (_, job) in enumerate(e.module().jobs("quick")):
            f = store / f"{_on_device(job, 'cpu').key}.json"
            seconds = json.loads(f.read_text())["seconds"] if f.exists() else 1.25 + k  # a shared job: its record
            f.write_text(json.dumps({"seconds": seconds}))
            want[e.name] += seconds
    assert lab._job_seconds(store, EXPERIMENTS.values(), "quick", "cpu") == {k: round(v, 1) for k, v in want.items()}


@pytest.mark.skipif(not lab.BASELINE.exists(), reason=f"needs the seed baseline script at {lab.BASELINE}")
def test_the_seed_baselines_epoch_is_read_from_the_script_and_its_failure_is_one_line(tiny_data, tmp_path):
    """The lab's 'one epoch of the notebook's pipeline here' runs ../shared/bench/seed_baseline.py for one epoch
    and reports the seconds the script printed for that epoch; a script that fails is one RunError line."""
    import time

    from rnnlab.io import RunError

    ds = load_imdb(tiny_data)
    t0 = time.perf_counter()
    (row,) = lab.baseline_epoch(ds, str(tiny_data))
    assert row["part"] == "baseline" and row["metric"] == "epoch_seconds"
    assert 0 < row["value"] < time.perf_counter() - t0  # the epoch alone, within the script's whole run
    with pytest.raises(RunError, match=r"seed_baseline\.py: failed \(") as err:
        lab.baseline_epoch(ds, str(tmp_path / "no such data"))
    assert "\n" not in str(err.value)


def test_a_lab_whose_workers_cannot_start_leaves_no_empty_folders(tmp_path, tiny_data, monkeypatch):
    """A full or read-only /dev/shm stops `lab --jobs 2` before any job: it left OUT/jobs/ (and OUT) empty behind."""
    import errno
    import multiprocessing

    class Context:
        def Pool(self, *a, **kw):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Context())
    out = tmp_path / "new" / "lab"
    r = CliRunner().invoke(main, ["lab", "--quick", "--jobs", "2", "--data", str(tiny_data), "--out", str(out),
                                  "--device", "cpu"])
    assert r.exit_code == 2 and "cannot start 2 worker processes" in r.stderr.splitlines()[-1], r.output
    assert not (tmp_path / "new").exists(), sorted(str(p) for p in tmp_path.rglob("*"))
    (out / "jobs").mkdir(parents=True)  # a lab folder the user had: it stays, and so does its (empty) jobs/
    r = CliRunner().invoke(main, ["lab", "--quick", "--jobs", "2", "--data", str(tiny_data), "--out", str(out),
                                  "--device", "cpu"])
    assert r.exit_code == 2 and (out / "jobs").is_dir()


def test_held_deletes_a_killed_labs_temporaries_in_every_folder_it_owns_and_nothing_else(tmp_path):
    """Each file the lab writes in OUT itself (lab.json, report.html, report.md), in OUT/jobs, in each job's folder,
    in seed/, explain/ and each experiment's folder: a kill in its write leaves `.NAME.` + 8 random characters +
    `.tmp` (as large as a model), which the next lab into OUT deletes. A user's own hidden files stay."""
    out = tmp_path / "lab"
    ours = [out / ".lab.json.k3_9a0zq.tmp", out / ".report.html.ab12cd34.tmp", out / ".report.md.zz_99yy0.tmp",
            out / "jobs" / ".0a1b2c3d.json.q1w2e3r4.tmp", out / "jobs" / "0a1b2c3d" / ".model.safetensors.a1b2c3d4.tmp",
            out / "seed" / ".metrics.jsonl.abcdefgh.tmp", out / "explain" / ".picks.json.abc12_3d.tmp",
            *(out / name / ".results.csv.aaaa_111.tmp" for name in EXPERIMENTS)]
    mine = [out / ".notes.tmp", out / ".report.md.swp.tmp", out / "seed.tmp", tmp_path / ".lab.json.k3_9a0zq.tmp",
            out / "seed" / ".notes.backup2024.tmp", out / "jobs" / ".draft.tmp"]  # not 8 characters
    for f in ours + mine:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    with lab.held(out):
        pass
    assert [f for f in ours if f.exists()] == []
    assert all(f.read_text() == "x" for f in mine)


def test_a_lab_stopped_by_ctrl_c_before_any_job_takes_back_the_folders_it_made(tmp_path):
    """Ctrl-C (KeyboardInterrupt, not an Exception) at once: OUT/jobs/ and OUT, made for this lab, go again."""
    out = tmp_path / "new" / "lab"
    with pytest.raises(KeyboardInterrupt):
        with lab.held(out):
            (out / "jobs").mkdir()  # as the runner makes it
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists(), sorted(str(p) for p in tmp_path.rglob("*"))
