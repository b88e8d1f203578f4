"""rnnlab.jobs: the Runner runs jobs in this process, in spawn worker processes or on Ray with the same rows
(timings aside); finished jobs are stored and kept on rerun, and redone when the job or the data differs
or the stored file is damaged; a failing job is a JobError naming it, with the finished ones kept;
exclusive jobs run alone, last, in this process; a job listed twice runs once.

Fake jobs live in tests/fake_jobs.py (worker processes import them by name); real ones are the quick
lab's own (fit, tf-idf, the notebook's exercise) on tiny synthetic data.

    RNNLAB_NO_RAY=1 pytest tests/test_jobs.py     # where ray cannot be installed: the Ray tests fail otherwise
"""
from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import fake_jobs
import rnnlab
from conftest import make_reviews, write_parquet_dir
from rnnlab.data import load_imdb
from rnnlab.experiments import EXPERIMENTS, compare, long_reviews
from rnnlab.experiments.common import TIMING, _on_device
from rnnlab.io import RunError
from rnnlab.jobs import Job, JobError, Runner, _check_alive
from rnnlab.lab import exercise_jobs, run_experiments

TESTS = Path(__file__).resolve().parent
SRC = Path(rnnlab.__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    """Module fixtures run before conftest's per-test environment: the same isolation for them (and for the
    worker processes they start, which inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.delenv("RNNLAB_DATA", raising=False)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def ds(tiny_data):
    return load_imdb(tiny_data)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    """Another synthetic dataset (other reviews, other sizes): another fingerprint."""
    return write_parquet_dir(tmp_path_factory.mktemp("other") / "imdb", make_reviews(200, seed=7),
                             make_reviews(100, seed=8))


@pytest.fixture(scope="module")
def other_ds(other_data):
    return load_imdb(other_data)


def echo(name: str, calls: Path, cost: float = 1.0, **kw) -> Job:
    return Job("fake_jobs:echo", {"name": name, "calls": str(calls), **kw}, label=f"echo {name}", cost=cost)


def untimed(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("metric") not in TIMING]


def snapshot(store: Path) -> dict[str, tuple[bytes, int]]:
    return {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(store.glob("*.json"))}


# --- the store: kept, redone -------------------------------------------------------------------------

def test_a_job_is_keyed_by_its_function_and_arguments_only():
    a = Job("fake_jobs:echo", {"name": "a", "n": [1, 2]}, label="one", cost=1.0)
    assert a.key == Job("fake_jobs:echo", {"n": [1, 2], "name": "a"}, label="another label", cost=9.0).key
    assert a.key != Job("fake_jobs:echo", {"name": "a", "n": [1, 3]}).key
    assert a.key != Job("fake_jobs:fail", {"name": "a", "n": [1, 2]}).key
    assert re.fullmatch(r"[0-9a-f]{20}", a.key)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_measurement_reads_the_same_fresh_and_from_the_store(ds, tiny_data, tmp_path, workers):
    """A NaN value came back as NaN from a job just run and as None from the store (JSON has no NaN), so a fresh
    `shortfall` wrote "nan" into results.csv where its rerun wrote "", with another results_sha256 (session 60).
    (Mutant: the fresh rows returned as the job gave them.)"""
    jobs = [Job("fake_jobs:nan", {"name": n}, label=n) for n in "ab"]
    fresh = Runner(workers=workers, threads=1, log=lambda s: None).run(jobs, ds, str(tiny_data), tmp_path / "jobs")
    again = Runner(workers=workers, threads=1, log=lambda s: None).run(jobs, ds, str(tiny_data), tmp_path / "jobs")
    assert fresh == again and [rows[0]["value"] for rows in fresh.values()] == [None, None]


def test_a_finished_job_is_stored_and_kept_on_rerun(ds, tiny_data, tmp_path):
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    jobs = [echo("a", calls), echo("b", calls)]
    first = Runner(workers=1, log=lambda s: None).run(jobs, ds, str(tiny_data), store)
    assert sorted(f.name for f in store.glob("*.json")) == sorted(f"{j.key}.json" for j in jobs)
    stored = json.loads((store / f"{jobs[0].key}.json").read_text())
    assert stored["fn"] == "fake_jobs:echo" and stored["args"] == jobs[0].args and stored["label"] == "echo a"
    assert stored["data"] == ds.fingerprint() and stored["threads"] == 1 and stored["rows"] == first[jobs[0].key]
    before = snapshot(store)
    time.sleep(0.05)  # an mtime of a rewrite would differ

    log: list[str] = []
    second = Runner(workers=1, log=log.append).run(jobs, ds, str(tiny_data), store)
    assert second == first
    assert fake_jobs.calls(calls, "a") == fake_jobs.calls(calls, "b") == 1  # not run again
    assert snapshot(store) == before  # files untouched: same bytes, same mtime
    assert log == [f"2 of 2 jobs already done, read from {store}"]


def test_jobs_this_runner_ran_are_read_back_without_saying_already_done(ds, tiny_data, tmp_path):
    """A lab runs a step's jobs, then an experiment asks for them again: that is no earlier run to report."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    jobs = [echo("a", calls), echo("b", calls)]
    log: list[str] = []
    runner = Runner(workers=1, log=log.append)
    first = runner.run(jobs, ds, str(tiny_data), store)
    second = runner.run([*jobs, echo("c", calls)], ds, str(tiny_data), store)
    assert {k: second[k] for k in first} == first and fake_jobs.calls(calls, "a") == 1
    assert not [line for line in log if "already done" in line], log
    log.clear()
    again = Runner(workers=1, log=log.append)
    again.run(jobs, ds, str(tiny_data), store)  # another command: it says so
    assert log == [f"2 of 2 jobs already done, read from {store}"]
    again.run(jobs[:1], ds, str(tiny_data), store)  # and once: an experiment reading its jobs after the lab's step
    assert log == [f"2 of 2 jobs already done, read from {store}"]


def test_a_job_stored_at_another_thread_count_is_run_again_at_this_one(ds, tiny_data, tmp_path):
    """A lab made with --threads 1 and resumed with --threads 2 read every job as done: its rows were the 1-thread
    numbers (a thread count changes the summation order) while the verdict recorded 2 threads per job."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    jobs = [echo("a", calls)]
    Runner(workers=1, threads=1, log=lambda s: None).run(jobs, ds, str(tiny_data), store)
    log: list[str] = []
    Runner(workers=1, threads=2, log=log.append).run(jobs, ds, str(tiny_data), store)
    assert fake_jobs.calls(calls, "a") == 2 and not [line for line in log if "already done" in line], log
    assert json.loads((store / f"{jobs[0].key}.json").read_text())["threads"] == 2
    Runner(workers=1, threads=2, log=log.append).run(jobs, ds, str(tiny_data), store)
    assert fake_jobs.calls(calls, "a") == 2 and log[-1] == f"1 of 1 jobs already done, read from {store}"


def test_a_changed_job_is_run_and_the_other_kept(ds, tiny_data, tmp_path):
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    old = echo("a", calls)
    Runner(workers=1, log=lambda s: None).run([old], ds, str(tiny_data), store)
    before = snapshot(store)
    new = echo("a", calls, sleep=0.01)  # other arguments: another job
    log: list[str] = []
    rows = Runner(workers=1, log=log.append).run([new], ds, str(tiny_data), store)
    assert fake_jobs.calls(calls, "a") == 2 and rows[new.key][0]["name"] == "a"
    assert (store / f"{new.key}.json").is_file()
    assert snapshot(store)[f"{old.key}.json"] == before[f"{old.key}.json"]
    assert not any("kept" in line for line in log)


def test_a_job_stored_on_other_data_is_run_again(ds, other_ds, tiny_data, other_data, tmp_path):
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    job = echo("a", calls)
    Runner(workers=1, log=lambda s: None).run([job], ds, str(tiny_data), store)
    assert ds.fingerprint() != other_ds.fingerprint()
    log: list[str] = []
    rows = Runner(workers=1, log=log.append).run([job], other_ds, str(other_data), store)
    assert fake_jobs.calls(calls, "a") == 2
    assert rows[job.key][0]["data"] == other_ds.fingerprint() and rows[job.key][0]["reviews"] == 200
    assert json.loads((store / f"{job.key}.json").read_text())["data"] == other_ds.fingerprint()
    assert not any("kept" in line for line in log)


DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "not JSON": lambda text: "\x00\xff{not json",
    "not an object": lambda text: "[1, 2, 3]\n",
    "rows not a list": lambda text: json.dumps({**json.loads(text), "rows": "many"}),
    "another job's file": lambda text: json.dumps({**json.loads(text), "args": {"name": "zzz"}}),
    # valid JSON whose rows are not what the job returned (found by a fault sweep: a traceback in compare, or
    # doubled rows counted twice, and never run again)
    "rows not objects": lambda text: json.dumps({**json.loads(text), "rows": [1]}),
    "a row without its part": lambda text: json.dumps({**json.loads(text), "rows": [{}]}),
    "a value edited": lambda text: json.dumps({**json.loads(text), "rows": [{**json.loads(text)["rows"][0], "reviews": 7}]}),
    "rows doubled": lambda text: json.dumps({**json.loads(text), "rows": json.loads(text)["rows"] * 2}),
    "no digest of the rows": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "rows_sha256"}),
    "a digest not a string": lambda text: json.dumps({**json.loads(text), "rows_sha256": None}),
    # written by an rnnlab that measured otherwise (session 55 changed the retention probe's rows)
    "written before rows were versioned": lambda text: json.dumps({k: v for k, v in json.loads(text).items()
                                                                  if k != "rows_version"}),
    "an older version of the rows": lambda text: json.dumps({**json.loads(text), "rows_version": 1}),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_job_file_is_run_again_not_fatal(ds, tiny_data, tmp_path, damage):
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    job = echo("a", calls)
    Runner(workers=1, log=lambda s: None).run([job], ds, str(tiny_data), store)
    f = store / f"{job.key}.json"
    f.write_bytes(DAMAGE[damage](f.read_text()).encode("utf-8", "surrogateescape"))
    rows = Runner(workers=1, log=lambda s: None).run([job], ds, str(tiny_data), store)
    assert fake_jobs.calls(calls, "a") == 2
    assert rows[job.key][0]["name"] == "a"
    assert json.loads(f.read_text())["rows"] == rows[job.key]  # rewritten whole


@pytest.mark.parametrize("blocker", ["a file for its folder", "a folder for its record"])
def test_something_where_a_jobs_record_or_files_go_is_refused_before_any_job_runs(ds, tiny_data, tmp_path, blocker):
    """A file where a job's folder goes (or a folder where its record goes) was found only once the job had
    trained, and every rerun trained it again to fail the same way (fault hunt): now refused first, naming it."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    a, b = echo("a", calls), echo("b", calls, keep=True)  # b keeps a file in STORE/<key>/, as a kept model does
    store.mkdir()
    path = store / (b.key if blocker == "a file for its folder" else f"{b.key}.json")
    path.write_text("junk") if blocker == "a file for its folder" else path.mkdir()
    with pytest.raises(RunError, match=re.escape(f"{path}: a ") + ".* where the job store keeps this job's"):
        Runner(workers=1, log=lambda s: None).run([a, b], ds, str(tiny_data), store)
    assert fake_jobs.calls(calls, "a") == fake_jobs.calls(calls, "b") == 0  # nothing ran
    path.unlink() if path.is_file() else path.rmdir()
    rows = Runner(workers=1, log=lambda s: None).run([a, b], ds, str(tiny_data), store)  # the way cleared: they run
    assert (store / b.key / "kept.txt").read_text() == "b" and rows[b.key][0]["name"] == "b"


def test_a_file_named_as_a_job_that_keeps_no_files_is_left_alone(ds, tiny_data, tmp_path):
    """Only a job that keeps files (a kept model) needs STORE/<key> as a folder: a file there stops no other job."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    a = echo("a", calls)
    store.mkdir()
    (store / a.key).write_text("mine")
    rows = Runner(workers=1, log=lambda s: None).run([a], ds, str(tiny_data), store)
    assert rows[a.key][0]["name"] == "a" and (store / a.key).read_text() == "mine"


def test_workers_refuse_data_other_than_the_commands(ds, other_data, tmp_path):
    """Workers read the data again from its path: data replaced there after the command read it (or another copy
    on a Ray node) was trained on and stored under the command's fingerprint, and reused by every rerun (fault
    hunt). Now no job runs on it, nothing is stored, and the error says why."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    jobs = [echo("a", calls), echo("b", calls)]
    with Runner(workers=2, log=lambda s: None) as runner:  # ds is tiny_data's; the path holds other data
        with pytest.raises(RunError, match="not the data this command read"):
            runner.run(jobs, ds, str(other_data), store)
    assert fake_jobs.calls(calls, "a") == fake_jobs.calls(calls, "b") == 0 and not list(store.glob("*.json"))


def test_the_same_job_listed_twice_runs_once(ds, tiny_data, tmp_path):
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    job = echo("a", calls)
    twin = Job(job.fn, dict(job.args), label="the same job, another label", cost=5.0)
    log: list[str] = []
    rows = Runner(workers=1, log=log.append).run([job, twin, job, echo("b", calls)], ds, str(tiny_data), store)
    assert fake_jobs.calls(calls, "a") == 1 and fake_jobs.calls(calls, "b") == 1
    assert set(rows) == {job.key, echo("b", calls).key} and len(list(store.glob("*.json"))) == 2
    assert sum(line.startswith("[jobs] ") for line in log) == 2 and "[jobs] 2/2" in log[-1]


def test_each_job_runs_with_the_runners_thread_count(ds, tiny_data, tmp_path):
    before = torch.get_num_threads()
    rows = Runner(workers=1, threads=3, log=lambda s: None).run([echo("a", tmp_path / "calls")], ds,
                                                                 str(tiny_data), tmp_path / "jobs")
    assert next(iter(rows.values()))[0]["threads"] == 3
    assert torch.get_num_threads() == before  # restored afterwards


# --- failures --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ValueError", "RuntimeError"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_is_a_job_error_naming_it_and_the_finished_are_kept(ds, tiny_data, tmp_path, workers, kind):
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    ok = [echo("a", calls, cost=5.0), echo("b", calls, cost=5.0)]
    # cheapest, so it starts last; in workers it waits a little so both others are done before it fails
    bad = Job("fake_jobs:fail", {"name": "bad", "kind": kind, "calls": str(calls), "sleep": 1.0 if workers > 1 else 0},
              label="the broken job", cost=0.1)
    with Runner(workers=workers, threads=1, log=lambda s: None) as runner:
        with pytest.raises(JobError) as err:
            runner.run([bad, *ok], ds, str(tiny_data), store)
    msg = str(err.value)
    assert "the broken job" in msg and "bad broke" in msg and len(msg.splitlines()) == 1, msg
    assert fake_jobs.calls(calls, "bad") == 1
    assert sorted(f.name for f in store.glob("*.json")) == sorted(f"{j.key}.json" for j in ok)
    log: list[str] = []
    Runner(workers=1, log=log.append).run(ok, ds, str(tiny_data), store)
    assert log == [f"2 of 2 jobs already done, read from {store}"]
    assert fake_jobs.calls(calls, "a") == fake_jobs.calls(calls, "b") == 1


def test_a_worker_killed_mid_job_stops_the_run_in_one_line_and_the_finished_are_kept(ds, tiny_data, tmp_path):
    """multiprocessing starts another worker in a dead one's place and its job never reports back: without a
    check, the run would wait for ever."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    ok = echo("a", calls, cost=5.0)
    dies = Job("fake_jobs:die", {"name": "dies", "calls": str(calls), "sleep": 0.5}, label="killed", cost=1.0)
    slow = echo("slow", calls, cost=0.1, sleep=60.0)  # still running when the run stops: stopped with it
    t0 = time.monotonic()
    with Runner(workers=2, threads=1, log=lambda s: None) as runner:
        with pytest.raises(JobError) as err:
            runner.run([ok, dies, slow], ds, str(tiny_data), store)
    assert time.monotonic() - t0 < 30
    assert str(err.value).startswith("a worker process died (killed by SIGKILL: the kernel's out-of-memory killer, "
                                     "or kill -9) with ") and len(str(err.value).splitlines()) == 1, str(err.value)
    assert (store / f"{ok.key}.json").is_file() and not (store / f"{slow.key}.json").exists()


def test_a_worker_killed_while_idle_stops_the_run_though_the_pool_cannot_be_terminated(ds, tiny_data, tmp_path):
    """An idle worker waits for its next job holding the task queue's lock; killed there, it never lets go, and
    Pool.terminate() waits for that lock for ever: the run stops anyway, its workers killed."""
    store, calls = tmp_path / "jobs", tmp_path / "calls"
    quick, slow = echo("quick", calls, cost=5.0), echo("slow", calls, cost=0.1, sleep=60.0)
    others = {p.pid for p in multiprocessing.active_children()}  # another test's pool, kept for its module

    def log(line):
        if line.startswith("[jobs] 1/2 echo quick"):  # its worker is idle now: kill it
            os.kill(json.loads((store / f"{quick.key}.json").read_text())["rows"][0]["pid"], signal.SIGKILL)

    t0 = time.monotonic()
    with Runner(workers=2, threads=1, log=log) as runner:
        with pytest.raises(JobError, match=r"^a worker process died \(killed by SIGKILL"):
            runner.run([quick, slow], ds, str(tiny_data), store)
    assert time.monotonic() - t0 < 40
    assert [p for p in multiprocessing.active_children() if p.pid not in others] == []  # none left behind


def test_workers_killed_while_idle_between_batches_or_before_the_end_cost_seconds_not_a_wait_for_ever(
        ds, tiny_data, tmp_path):
    """A Runner reused for a second batch after its idle workers were killed starts a new pool (the old one's
    queue lock died with them), and closing a pool whose worker died idle after its last job stops it: before,
    each waited for ever (the lab hung after '[lab] done')."""
    calls = tmp_path / "calls"
    others = {p.pid for p in multiprocessing.active_children()}
    t0 = time.monotonic()
    with Runner(workers=2, threads=1, log=lambda s: None) as runner:
        rows = runner.run([echo(n, calls) for n in "ab"], ds, str(tiny_data), tmp_path / "one")
        for pid in {r[0]["pid"] for r in rows.values()}:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        rows = runner.run([echo(n, calls) for n in "cd"], ds, str(tiny_data), tmp_path / "two")
        assert sorted(r[0]["name"] for r in rows.values()) == ["c", "d"]
        os.kill(rows[echo("c", calls).key][0]["pid"], signal.SIGKILL)
        time.sleep(0.5)
    assert time.monotonic() - t0 < 60
    assert [p for p in multiprocessing.active_children() if p.pid not in others] == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["interrupt", "normal", "normal, one worker killed"])
def test_workers_killed_by_the_same_signal_after_the_last_job_cost_seconds_not_a_wait_for_ever(
        ds, tiny_data, tmp_path, ending):
    """SIGTERM to a lab's process group after its pool's last job (during the timings, the conclusions, explain or
    the report): the idle workers die holding the task queue's lock, the lab's KeyboardInterrupt closes the pool
    before the kernel has reaped them, so no worker looked dead, and the pool's own clean-up waited on that lock for
    ever (session 59's fault hunt). The same where the workers die as the command ends without an error, and where
    one dies holding the lock while the other waits for it (the diff review's case)."""
    calls = tmp_path / "calls"
    others = {p.pid for p in multiprocessing.active_children()}
    t0 = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        with Runner(workers=2, threads=1, log=lambda s: None) as runner:
            rows = runner.run([echo(n, calls, sleep=1.0) for n in "ab"], ds, str(tiny_data), tmp_path / "one")
            pids = sorted({r[0]["pid"] for r in rows.values()})
            assert len(pids) == 2  # each job on its own worker: both are idle now
            for pid in pids[:1] if ending.endswith("one worker killed") else pids:
                os.kill(pid, signal.SIGTERM)  # no wait: the parent's interrupt comes at once
            if ending == "interrupt":
                raise KeyboardInterrupt("SIGTERM")
    assert time.monotonic() - t0 < 60
    assert [p for p in multiprocessing.active_children() if p.pid not in others] == []


# --- real jobs: in this process and in two worker processes -----------------------------------------

def fit_jobs() -> list[Job]:
    """The quick lab's long-reviews fits: RNN and bag of embeddings, each with every experiment's measures."""
    return [_on_device(j, "cpu") for _, j in long_reviews.jobs("quick")]


def tfidf_job() -> Job:
    (job,) = [j for tag, j in compare.jobs("quick") if tag["model"] == "tfidf"]
    return job


@pytest.fixture(scope="module")
def pool():
    """One Runner with 2 spawn worker processes, shared (as the lab shares one across its experiments)."""
    log: list[str] = []
    with Runner(workers=2, threads=1, log=log.append) as runner:
        yield runner, log


@pytest.fixture(scope="module")
def real_runs(ds, tiny_data, tmp_path_factory, pool):
    """{"inproc" | "pool": (results, log, dir)} of the same real jobs (and the notebook's exercise)."""
    base = tmp_path_factory.mktemp("real")
    jobs = [*fit_jobs(), tfidf_job(), *exercise_jobs("quick", "cpu")]
    log: list[str] = []
    with Runner(workers=1, threads=1, log=log.append) as runner:
        out = {"inproc": (runner.run(jobs, ds, str(tiny_data), base / "inproc" / "jobs"), log, base / "inproc")}
    runner, log = pool
    log.clear()
    out["pool"] = (runner.run(jobs, ds, str(tiny_data), base / "pool" / "jobs"), list(log), base / "pool")
    return out


def test_real_jobs_give_the_same_rows_in_process_and_in_two_worker_processes(real_runs, ds):
    (inproc, _, _), (pool, log, d2) = real_runs["inproc"], real_runs["pool"]
    fits = [j.key for j in fit_jobs()]
    keys = [*fits, tfidf_job().key]
    assert f"[jobs] {len(keys) + 1} jobs on 2 worker processes x 1 thread(s)" in log  # + the exercise
    assert all(len(untimed(inproc[k])) < len(inproc[k]) for k in fits)  # each fit has timed rows, left out
    for k in keys:
        a, b = untimed(inproc[k]), untimed(pool[k])
        assert len(a) >= 5, (k, a)
        assert a == b, (k, [(x, y) for x, y in zip(a, b) if x != y][:3])
        stored = json.loads((d2 / "jobs" / f"{k}.json").read_text())
        assert stored["data"] == ds.fingerprint() and stored["threads"] == 1
        assert untimed(stored["rows"]) == a
    assert any(r["metric"] == "test_acc" for k in keys for r in untimed(inproc[k]))


def test_the_notebooks_exercise_gives_the_same_rows_in_process_and_in_workers(real_runs):
    """Its per-epoch rows include train_seconds: a timing, which rnnlab.experiments.common.TIMING must list."""
    (inproc, _, _), (pool, _, _) = real_runs["inproc"], real_runs["pool"]
    (job,) = exercise_jobs("quick", "cpu")
    a, b = untimed(inproc[job.key]), untimed(pool[job.key])
    assert {r["metric"] for r in a} >= {"test_acc", "train_loss"}
    assert a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]


def test_exclusive_jobs_run_last_alone_in_this_process(ds, tiny_data, tmp_path, pool):
    calls = tmp_path / "calls"
    timing = Job("fake_jobs:echo", {"name": "timing", "calls": str(calls)}, label="a timing", cost=100.0,
                 exclusive=True)
    others = [echo(n, calls, sleep=0.3) for n in "abc"]
    runner, log = pool
    log.clear()
    rows = runner.run([timing, *others], ds, str(tiny_data), tmp_path / "jobs")
    t = rows[timing.key][0]
    assert t["pid"] == os.getpid() and t["threads"] == 1
    assert all(rows[j.key][0]["pid"] != os.getpid() for j in others)  # in worker processes
    assert len({rows[j.key][0]["pid"] for j in others}) <= 2
    assert t["start"] >= max(rows[j.key][0]["end"] for j in others)  # after every other job, so alone
    assert "[jobs] 3 jobs on 2 worker processes x 1 thread(s), then 1 timing(s) alone" in log
    assert log.index("[jobs] a timing: running alone (a timing)") > max(
        i for i, line in enumerate(log) if re.match(r"\[jobs\] \d/4 echo", line))


def test_a_runner_reused_on_other_data_runs_the_jobs_on_that_data(ds, other_ds, tiny_data, other_data, tmp_path, pool):
    """One Runner (its worker processes) asked to run jobs on one dataset, then on another."""
    calls = tmp_path / "calls"
    jobs = [echo("a", calls), echo("b", calls)]
    runner, _ = pool
    first = runner.run(jobs, ds, str(tiny_data), tmp_path / "one")
    second = runner.run(jobs, other_ds, str(other_data), tmp_path / "two")
    assert {r[0]["data"] for r in first.values()} == {ds.fingerprint()}
    assert {r[0]["data"] for r in second.values()} == {other_ds.fingerprint()}, \
        "the worker processes ran the jobs on the first dataset, stored as the second's"


def test_no_more_worker_processes_than_jobs(ds, tiny_data, tmp_path):
    """--jobs above the number of jobs starts one process per job, not --jobs of them (each costs its start-up
    and its memory); a later, larger batch on the same Runner gets a pool of its size."""
    calls, log = tmp_path / "calls", []
    others = {p.pid for p in multiprocessing.active_children()}  # another test's pool, kept for its module
    started = lambda: [p for p in multiprocessing.active_children() if p.pid not in others]  # noqa: E731
    with Runner(workers=8, threads=1, log=log.append) as runner:
        rows = runner.run([echo(n, calls) for n in "ab"], ds, str(tiny_data), tmp_path / "one")
        assert "[jobs] 2 jobs on 2 worker processes x 1 thread(s)" in log
        assert os.getpid() not in {r[0]["pid"] for r in rows.values()}
        assert len(started()) == 2  # the pool's, kept for the next batch (one worker may have run both jobs)
        runner.run([echo(n, calls) for n in "cdef"], ds, str(tiny_data), tmp_path / "two")
        assert "[jobs] 4 jobs on 4 worker processes x 1 thread(s)" in log
        assert len(started()) == 4
    assert started() == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="Linux: the kernel's parent-death signal")
def test_worker_processes_die_with_a_lab_killed_outright(tiny_data, tmp_path):
    """kill -9 of the process that runs the pool (or the out-of-memory killer): its workers go at once, instead of
    training on for nobody and printing broken pipes."""
    sys.path.insert(0, str(TESTS.parent / "benchmarks"))
    from memwatch import children

    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
            "from rnnlab.data import load_imdb\nfrom rnnlab.jobs import Job, Runner\n"
            f"ds = load_imdb({str(tiny_data)!r})\n"
            "jobs = [Job('fake_jobs:echo', {'name': n, 'sleep': 120.0}, label=n) for n in 'ab']\n"
            f"Runner(workers=2, log=lambda s: None).run(jobs, ds, {str(tiny_data)!r}, {str(tmp_path / 'jobs')!r})\n")
    lab = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while len(children(lab.pid)) < 3 and time.monotonic() < deadline:  # 2 workers and the resource tracker
            time.sleep(0.2)
        workers = children(lab.pid)
        assert len(workers) >= 2, workers
        time.sleep(3)  # the workers are in their jobs
        lab.kill()
        lab.wait(30)
        deadline = time.monotonic() + 20
        while any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in _state(w)]
        assert not alive, f"still running after the lab was killed: {alive}"
    finally:
        for pid in [lab.pid, *children(lab.pid), *locals().get("workers", [])]:  # no sleeper left on a failure
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_an_empty_ray_address_is_refused():
    with pytest.raises(RunError, match="--ray: empty"):
        Runner(ray_address=" ")


# --- Ray --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    """Ray is started by the Runner (ray_address="local") within this fixture and shut down after it."""
    if os.environ.get("RNNLAB_NO_RAY") == "1":
        pytest.skip("RNNLAB_NO_RAY=1: the Ray tests are off")
    try:
        import ray
    except ImportError:
        pytest.fail("ray is not installed: pip install -e '.[test]' (or '.[ray]'); RNNLAB_NO_RAY=1 turns these off")
    assert not ray.is_initialized()
    with pytest.MonkeyPatch.context() as mp:  # Ray's workers see PYTHONPATH, not this process's sys.path
        mp.setenv("PYTHONPATH", os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        try:
            yield ray
        finally:
            ray.shutdown()


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["metric"] not in TIMING]


def test_ray_gives_the_same_rows_as_this_process(ray_local, real_runs, ds, tiny_data, tmp_path):
    inproc_dir = real_runs["inproc"][2]  # its jobs/ already holds long-reviews' jobs, run in this process
    exp = [EXPERIMENTS["long-reviews"]]
    run_experiments(exp, ds, inproc_dir, quick=True, device="cpu", runner=Runner(workers=1, log=lambda s: None),
                    log=lambda s: None, data_arg=str(tiny_data))
    log: list[str] = []
    starts_ray = not ray_local.is_initialized()
    mine = lambda *a: None  # noqa: E731  (ray.init installs its own SIGTERM handler: the command's must stay)
    old = signal.signal(signal.SIGTERM, mine)
    try:
        with Runner(threads=1, ray_address="local", log=log.append) as runner:
            run_experiments(exp, ds, tmp_path, quick=True, device="cpu", runner=runner, log=log.append,
                            data_arg=str(tiny_data))
        assert not starts_ray or signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)
    assert ray_local.is_initialized()
    n = len(long_reviews.jobs("quick"))
    assert f"[jobs] {n} jobs on Ray (local), 1 thread(s) each" in log
    assert len(list((tmp_path / "jobs").glob("*.json"))) == n
    a, b = _csv_rows(inproc_dir / "long-reviews" / "results.csv"), _csv_rows(tmp_path / "long-reviews" / "results.csv")
    assert len(a) > 20 and a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]


def test_a_failing_job_on_ray_is_a_job_error_naming_it_and_why(ray_local, ds, tiny_data, tmp_path):
    calls = tmp_path / "calls"
    ok = echo("a", calls, cost=5.0)
    bad = Job("fake_jobs:fail", {"name": "bad", "calls": str(calls), "sleep": 1.0}, label="the broken job", cost=0.1)
    with pytest.raises(JobError) as err:
        with Runner(threads=1, ray_address="local", log=lambda s: None) as runner:
            runner.run([ok, bad], ds, str(tiny_data), tmp_path / "jobs")
    msg = str(err.value)
    assert "the broken job" in msg and "bad broke" in msg, msg  # the cause, not only where it ran
    assert "\x1b[" not in msg, repr(msg)  # no terminal colour codes
    assert (tmp_path / "jobs" / f"{ok.key}.json").is_file()


def test_a_ray_worker_killed_mid_job_is_a_job_error_naming_it(ray_local, ds, tiny_data, tmp_path):
    """Ray raises WorkerCrashedError, not RayTaskError, for a worker killed (the out-of-memory killer): one line."""
    calls = tmp_path / "calls"
    dies = Job("fake_jobs:die", {"name": "dies", "calls": str(calls), "sleep": 0.5}, label="killed", cost=1.0)
    with pytest.raises(JobError) as err:
        with Runner(threads=1, ray_address="local", log=lambda s: None) as runner:
            runner.run([dies], ds, str(tiny_data), tmp_path / "jobs")
    msg = str(err.value)
    assert msg.startswith("job 'killed' failed on Ray: ") and len(msg.splitlines()) == 1, msg
    assert "died" in msg, msg


def test_more_threads_than_the_ray_cluster_has_cpus_fail_at_once(ray_local, ds, tiny_data, tmp_path):
    """A task asking for more CPUs than the cluster has would wait forever: one line instead, nothing run."""
    calls = tmp_path / "calls"
    with Runner(threads=1, ray_address="local", log=lambda s: None) as runner:  # Ray up, as the lab would have it
        runner.run([echo("a", calls)], ds, str(tiny_data), tmp_path / "one")
    too_many = int(ray_local.cluster_resources()["CPU"]) + 1
    with pytest.raises(RunError, match=f"CPUs, fewer than --threads {too_many}: no job could start"):
        with Runner(threads=too_many, ray_address="local", log=lambda s: None) as runner:
            runner.run([echo("b", calls)], ds, str(tiny_data), tmp_path / "two")
    assert fake_jobs.calls(calls, "b") == 0
    assert not (tmp_path / "two").exists()  # refused on entering the Runner, before the lab makes its folders


def test_ray_runs_the_jobs_on_the_data_it_is_given(ray_local, ds, other_ds, tiny_data, other_data, tmp_path):
    """Two Runners on the same Ray instance, one dataset each (Ray keeps its worker processes)."""
    calls = tmp_path / "calls"
    jobs = [echo("a", calls), echo("b", calls)]
    with Runner(threads=1, ray_address="local", log=lambda s: None) as runner:
        first = runner.run(jobs, ds, str(tiny_data), tmp_path / "one")
    with Runner(threads=1, ray_address="local", log=lambda s: None) as runner:
        second = runner.run(jobs, other_ds, str(other_data), tmp_path / "two")
    assert all(r[0]["pid"] != os.getpid() for r in first.values())  # ran on Ray's workers
    assert {r[0]["data"] for r in first.values()} == {ds.fingerprint()}
    assert {r[0]["data"] for r in second.values()} == {other_ds.fingerprint()}, \
        "Ray's workers ran the jobs on the first dataset, stored as the second's"


def test_only_the_cores_this_process_may_use_are_counted(monkeypatch):
    """Under taskset or a container's cpuset (one core of two): one worker by default, serial times one thread
    count only (a second thread on the same core measured 0.4x 'speed-ups'), and the record says so."""
    from rnnlab.experiments import serial
    from rnnlab.jobs import Runner, usable_cpus
    from rnnlab.report import _cores
    from rnnlab.runs import environment

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    assert usable_cpus() == 1 and Runner(log=lambda s: None).workers == 1 and serial._threads() == (1,)
    env = environment()
    assert env["cpu_count"] == 2 and env["usable_cpus"] == 1 and _cores(env) == "2 cores (1 usable)"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert Runner(log=lambda s: None).workers == 2 and serial._threads() == (1, 2)
    assert "usable_cpus" not in environment() and _cores(environment()) == "2 cores"


def test_more_threads_than_cpus_is_said_not_refused(ds, tiny_data, tmp_path, monkeypatch):
    """`--jobs 2 --threads 1000` on 2 CPUs crawled in silence; refusing it would be wrong on a Ray cluster's bigger
    machines, so a local runner says it before its jobs: the processes it runs them on (no more than the jobs) times
    the threads, against the CPUs it may use. Not for the default, a fitting count, or jobs already done."""
    from rnnlab.jobs import Runner

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the runs' threads, not this test's subject
    for k, (workers, threads, n, said) in enumerate(((1, 3, 1, 1), (8, 1, 3, 3), (8, 1, 2, None), (None, 1, 3, None),
                                                       (2, 2, 1, None))):
        lines = []
        Runner(workers=workers, threads=threads, log=lines.append).run([echo(c, tmp_path / "calls") for c in "abc"[:n]],
                                                                       ds, str(tiny_data), tmp_path / str(k))
        notes = [s for s in lines if s.startswith("note:")]
        assert notes == ([f"note: {said} process(es) x {threads} thread(s) on the 2 CPU(s) this process may use: the "
                          "jobs share them and run slower (the results do not change)"] if said else []), (k, lines)
        again = []
        Runner(workers=workers, threads=threads, log=again.append).run([echo(c, tmp_path / "calls") for c in "abc"[:n]],
                                                                       ds, str(tiny_data), tmp_path / str(k))
        assert not [s for s in again if s.startswith("note:")]  # all done before: nothing runs
    lines = []  # a pool kept from a batch of 3 runs a later batch of 2 on 2 of its workers; timings are not counted
    with Runner(workers=3, threads=1, log=lines.append) as runner:  # (they run alone, at their own thread counts)
        runner.run([echo(c, tmp_path / "calls") for c in "def"], ds, str(tiny_data), tmp_path / "pool")
        runner.run([echo(c, tmp_path / "calls") for c in "gh"], ds, str(tiny_data), tmp_path / "pool")
    assert [s for s in lines if s.startswith("note:")] == [
        "note: 3 process(es) x 1 thread(s) on the 2 CPU(s) this process may use: the jobs share them and run slower "
        "(the results do not change)"], lines
    lines = []
    timing = Job("fake_jobs:echo", {"name": "t", "calls": str(tmp_path / "calls")}, label="t", exclusive=True)
    Runner(workers=1, threads=3, log=lines.append).run([timing], ds, str(tiny_data), tmp_path / "timing")
    assert not [s for s in lines if s.startswith("note:")], lines


def test_a_worker_ignores_ctrl_c_before_it_loads_torch():
    """Ctrl-C reaches every process of the terminal's group: a worker still loading torch printed its traceback
    ('Process SpawnPoolWorker-2:') under the lab's one line. The worker ignores it before that import."""
    code = """
import builtins, os, signal
real = builtins.__import__
seen = []
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    if "train" in (fromlist or ()):
        seen.append(signal.getsignal(signal.SIGINT))
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = spy
from rnnlab.jobs import _worker_init
_worker_init(os.getppid())
print(seen == [signal.SIG_IGN])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "True", (r.stdout, r.stderr[-500:])


def test_ray_addresses_of_other_schemes_go_to_ray_and_a_dashboards_is_refused():
    from rnnlab.jobs import _reachable

    for address in ("ray://127.0.0.1:1", "anyscale://my-cluster", "auto", None):  # Ray's to judge (Client plugins)
        assert _reachable(address) is None
    for address in ("http://127.0.0.1:8265", "HTTPS://x"):
        with pytest.raises(RunError, match="give HOST:PORT, ray://HOST:PORT, auto or local"):
            _reachable(address)


@pytest.mark.parametrize("errno_, says", [(28, "no space left on device in /dev/shm (where their locks live)"),
                                          (30, "read-only file system in /dev/shm (where their locks live)"),
                                          (2, "no such file or directory in /dev/shm (where their locks live)"),
                                          (13, "permission denied in /dev/shm (where their locks live)"),
                                          (1, "operation not permitted in /dev/shm (where their locks live)"),
                                          (11, "resource temporarily unavailable")])
def test_worker_processes_that_cannot_start_are_one_line_naming_why(ds, tiny_data, tmp_path, monkeypatch, errno_,
                                                                    says):
    """The pool's locks are POSIX semaphores in /dev/shm: a full or read-only one (a container's is often 64 MB)
    said 'cannot write the output: No space left on device', blaming standard output."""
    class Context:
        def Pool(self, *a, **kw):
            raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Context())
    with pytest.raises(RunError) as e:
        Runner(workers=2).run([echo("a", tmp_path / "calls"), echo("b", tmp_path / "calls")], ds, str(tiny_data),
                              tmp_path / "store")
    assert str(e.value) == f"cannot start 2 worker processes: {says}; run the jobs in this process with --jobs 1"


# --- from the mutation test of session 45's code (session 46) ---------------------------------------
@pytest.mark.timeout(90)
def test_a_worker_that_exits_mid_job_stops_the_run_in_one_line(ds, tiny_data, tmp_path):
    """A worker that exits rather than being killed (a job or a library calling exit: SystemExit escapes the
    pool's worker loop) leaves its job unanswered just the same: one line naming its exit code, no wait for ever."""
    calls = tmp_path / "calls"
    exits = Job("sys:exit", {}, label="exits", cost=5.0)  # sys.exit(ds): SystemExit, exit code 1
    t0 = time.monotonic()
    with Runner(workers=2, threads=1, log=lambda s: None) as runner:
        with pytest.raises(JobError, match=r"^a worker process died \(exit code 1\) with \d job\(s\) unfinished$"):
            runner.run([exits, echo("slow", calls, cost=0.1, sleep=60.0)], ds, str(tiny_data), tmp_path / "jobs")
    assert time.monotonic() - t0 < 45


@pytest.mark.timeout(90)
def test_the_count_of_unfinished_jobs_is_those_left_not_all_of_the_batch(ds, tiny_data, tmp_path):
    calls = tmp_path / "calls"
    ok = echo("a", calls, cost=5.0)
    dies = Job("fake_jobs:die", {"name": "dies", "calls": str(calls), "sleep": 0.5}, label="killed", cost=1.0)
    slow = echo("slow", calls, cost=0.1, sleep=60.0)
    store = tmp_path / "jobs"
    with Runner(workers=2, threads=1, log=lambda s: None) as runner:
        with pytest.raises(JobError) as err:
            runner.run([ok, dies, slow], ds, str(tiny_data), store)
    assert (store / f"{ok.key}.json").is_file()  # as test_jobs asserts: `ok` finished first
    assert str(err.value).endswith(" with 2 job(s) unfinished"), str(err.value)


@pytest.mark.parametrize("code,how", [(-35, "exit code -35"), (-signal.SIGTERM, "killed by SIGTERM"), (3, "exit code 3")])
def test_a_dead_worker_is_named_by_its_signal_or_exit_code_whatever_the_code(code, how):
    """A realtime signal (SIGRTMIN+1 = 35 on Linux) has no name in Python's signal.Signals: still one line."""
    dead = SimpleNamespace(pid=12345, exitcode=code)
    with pytest.raises(JobError, match=rf"^a worker process died \({how}\) with 4 job\(s\) unfinished$"):
        _check_alive(SimpleNamespace(_pool=[dead]), {}, 4)
    with pytest.raises(JobError):  # a worker the pool already dropped from its list is still found
        _check_alive(SimpleNamespace(_pool=[]), {12345: dead}, 4)
    _check_alive(SimpleNamespace(_pool=[SimpleNamespace(pid=1, exitcode=None)]), {}, 4)  # all alive: nothing


def test_check_ray_takes_local_and_auto_and_refuses_a_blank_or_hostless_address():
    """`--ray local` starts a local instance: nothing to reach first (a mutant that checked it as HOST:PORT refused
    it, and no test passed "local" through with the package installed); a blank or hostless address is its form."""
    from rnnlab.jobs import check_ray

    assert check_ray(None) is None and check_ray("local") is None and check_ray("auto") is None
    with pytest.raises(RunError, match="^--ray: empty; give HOST:PORT"):
        check_ray("  ")
    with pytest.raises(RunError, match="^--ray :6379: give HOST:PORT, ray://HOST:PORT, auto or local$"):
        check_ray(":6379")


@pytest.mark.parametrize("address", ["ray://", "ray://  ", "ray://:10001", "localhost:²", "host:6379x", "ray://[::1",
                                     "ray://[::1:10001", "ray://host:port", "ray://host:99999", "localhost:99999"])
def test_a_ray_address_with_no_host_or_a_port_that_is_no_number_is_refused_at_once(address):
    """ray:// with no host went to gRPC, which printed five lines of C++ errors and gave up after 33 s; "²" passed
    str.isdigit() and int() then raised (session 53's fault hunt); a malformed IPv6 literal or a port that is no number
    in a ray:// address waited for Ray's client timeout before its error (session 54's)."""
    from rnnlab.jobs import _reachable

    with pytest.raises(RunError, match="give HOST:PORT, ray://HOST:PORT, auto or local$"):
        _reachable(address)


def test_a_local_ray_under_an_address_space_limit_is_refused_not_left_waiting(monkeypatch):
    """Under `ulimit -v` Ray's object store cannot map its memory and ray.init waits for ever, silently."""
    ray = pytest.importorskip("ray")
    import rnnlab.jobs

    monkeypatch.setattr(rnnlab.jobs, "_address_space_limited", lambda: True)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process (another test's may run)
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("ray.init was called"))
    with pytest.raises(RunError, match=r"^--ray local: Ray cannot start under a limit on address space \(ulimit -v\)"):
        Runner(ray_address="local")._connect_ray()


@pytest.mark.parametrize("raised, says", [(SystemExit(signal.SIGTERM), "SIGTERM"), (KeyboardInterrupt(), "")])
def test_a_signal_while_ray_starts_is_an_interrupt_and_what_it_started_is_shut_down(monkeypatch, raised, says):
    """ray.init puts in its own SIGTERM handler (sys.exit(15)) before it connects: a SIGTERM then ended the command
    with exit code 15, no line, and Ray's agents left running for minutes (session 53's fault hunt)."""
    ray = pytest.importorskip("ray")
    shut = []

    def init(**kw):
        raise raised

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shut.append(True))
    with pytest.raises(KeyboardInterrupt) as e:
        Runner(ray_address="local")._connect_ray()
    assert str(e.value) == says and shut == [True]


def test_ray_exiting_while_it_starts_without_a_signal_is_a_start_failure_not_an_interrupt(monkeypatch):
    """sys.exit(1) inside ray.init is Ray giving up, not SIGHUP (signal 1)."""
    ray = pytest.importorskip("ray")

    def init(**kw):
        raise SystemExit(1)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(RunError, match=r"^--ray local: cannot start or reach Ray \(it exited with code 1\)$"):
        Runner(ray_address="local")._connect_ray()


def test_a_cpu_quota_caps_the_cpus_the_lab_counts_on(tmp_path, monkeypatch):
    """A container given 2 CPUs' worth of a 64-core host (`docker --cpus 2`: a cgroup quota, its affinity all 64)
    started 64 worker processes by default, each with its own torch: the quota caps the count now (rounded up), on
    cgroup v2 and v1, and a quota above the affinity or one that cannot be read changes nothing."""
    import rnnlab.jobs as jobs_mod

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    root, member = tmp_path / "cgroup", tmp_path / "self_cgroup"
    monkeypatch.setattr(jobs_mod, "CGROUP", str(root))
    monkeypatch.setattr(jobs_mod, "MEMBERSHIP", str(member))
    (root / "box").mkdir(parents=True)
    member.write_text("0::/box\n")
    assert jobs_mod.cpu_quota() is None and jobs_mod.usable_cpus() == 64 == Runner().workers
    for cpu_max, usable in (("200000 100000", 2), ("150000 100000", 2), ("max 100000", 64), ("6400000 100000", 64),
                            ("garbage", 64), ("", 64)):
        (root / "box" / "cpu.max").write_text(cpu_max + "\n")
        assert jobs_mod.usable_cpus() == usable == Runner().workers, cpu_max
    assert Runner(threads=2).workers == 32
    (root / "box" / "cpu.max").write_text("300000 100000\n")
    assert Runner(threads=2).workers == 1  # 3 CPUs' worth: one job of 2 threads
    member.write_text("4:cpu,cpuacct:/box\n")  # cgroup v1: the quota over the period, in the cpu controller's mount
    (root / "cpu" / "box").mkdir(parents=True)
    (root / "cpu" / "box" / "cpu.cfs_quota_us").write_text("50000\n")
    (root / "cpu" / "box" / "cpu.cfs_period_us").write_text("100000\n")
    assert jobs_mod.cpu_quota() == 0.5 and jobs_mod.usable_cpus() == 1
    (root / "cpu" / "box" / "cpu.cfs_quota_us").write_text("-1\n")
    assert jobs_mod.usable_cpus() == 64
