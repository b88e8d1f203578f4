"""The lab's independent units of work, run side by side: worker processes here, or a Ray cluster.

    from rnnlab.jobs import Job, Runner
    with Runner(workers=2, threads=1) as runner:
        results = runner.run(jobs, ds, data_arg="../shared/data/imdb", store=Path("results/lab/jobs"))  # {job.key: rows}

A `Job` names a function ("module:function") and JSON-able keyword arguments; the function is called
as `fn(ds, **args)` and returns tidy rows (a list of dicts), or {"rows": rows, "files": {name: bytes}}
whose files land in STORE/<key>/ (a trained model, say). Every job runs with a fixed number of
torch threads, so its numbers do not depend on how many run at once (only its timings do). Each
finished job is written to STORE/<key>.json, and a rerun keeps it: an interrupted lab resumes (not a record
written before ROWS_VERSION last changed: rnnlab measures differently since, and the job runs again).
Worker processes load the data once each from `data_arg` and share the tokenised corpus through the
memory-mapped cache. `exclusive` jobs (timings) run alone in this process after all others.
With `ray_address` the jobs go to a Ray cluster (the ray package: `pip install ray`; "local" starts one
here) and their rows come back into the same files.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .io import (HANGUP, STOPS, RunError, fault, first_line, jsonable, read_json, shorten, signals_deferred,
                 write_bytes, write_json)
from .memory import cgroup_folders


ROWS_VERSION = 2  # raised whenever a change to rnnlab moves what a job returns (2: session 55, the retention probe)


class JobError(RunError):
    """A job failed; the finished ones are kept (rerunning the same command resumes)."""


@dataclass(frozen=True)
class Job:
    """One unit of an experiment: `fn(ds, **args) -> rows`."""

    fn: str  # "rnnlab.experiments.compare:train_job"
    args: dict = field(hash=False)  # JSON-able keyword arguments
    label: str = ""  # for the log
    cost: float = 1.0  # relative run time: the longest start first
    exclusive: bool = False  # timing: runs alone, after every other job

    @property
    def key(self) -> str:
        blob = json.dumps({"fn": self.fn, "args": self.args}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def execute(job: Job, ds, threads: int) -> list[dict]:
    """Run one job here with `threads` torch threads; returns its rows. A failure is a JobError naming
    the job (an interrupt stays an interrupt)."""
    from .runs import torch_threads
    from .train import Interrupted

    module, name = job.fn.split(":")
    fn = getattr(importlib.import_module(module), name)
    try:
        with torch_threads(threads):
            return fn(ds, **job.args)
    except Interrupted:
        raise
    except Exception as e:  # noqa: BLE001 - a failed job is one line; the finished ones stay stored
        raise JobError(f"job '{job.label}' failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}") from e


_WORKER: dict = {}  # per worker process: the last dataset loaded, by its data argument


@contextlib.contextmanager
def _ignored(*signals):
    """The signals ignored in this process meanwhile, so that the worker processes it starts ignore them before
    their first line of Python (a Ctrl-C to the terminal's group stops the lab, which stops the pool)."""
    before = {}
    try:
        for s in signals:
            with contextlib.suppress(ValueError):  # not the main thread: as they are
                before[s] = signal.signal(s, signal.SIG_IGN)
        yield
    finally:
        for s, h in before.items():
            if h is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(s, h)


def _worker_init(parent: int) -> None:
    """A worker dies with the parent: on Linux the kernel sends it SIGKILL when the lab is killed outright (kill -9,
    the out-of-memory killer), so it does not train on for nobody and then print broken pipes. It leaves Ctrl-C and
    a closed terminal to the parent (which stops the pool) and dies on SIGTERM, as a process should."""
    import ctypes

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # first: a Ctrl-C while torch loads below printed the worker's
    for sig in HANGUP:                            # traceback under the lab's one line
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError, TypeError):  # not Linux: no such call
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before that call
        os._exit(1)
    from . import train

    train.StopOnSignal.enabled = False


def check_ray(address: str | None) -> None:
    """Before any data is read: RunError for a --ray address no cluster can have, or without the ray package."""
    import importlib.util

    if address is None:
        return
    if not address.strip():
        raise RunError("--ray: empty; give HOST:PORT, ray://HOST:PORT, auto or local")
    if importlib.util.find_spec("ray") is None:
        raise RunError("--ray needs the ray package: pip install ray")
    _reachable(None if address == "local" else address)  # the form, and a HOST:PORT's answer


def _gcs_address(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a cluster's GCS address (HOST:PORT); None for ray://, local (None) or auto; RunError for
    anything else."""
    if address is not None and address.lower().startswith(("http://", "https://")):
        # the dashboard's address: Ray's own message about it breaks off mid-sentence
        raise RunError(f"--ray {shorten(address)}: give HOST:PORT, ray://HOST:PORT, auto or local")
    if address is not None and "://" in address and not _host_of(address):  # ray://, ray://:10001, ray://[::1,
        raise RunError(f"--ray {shorten(address)}: give HOST:PORT, ray://HOST:PORT, auto or local")  # gRPC's 33 s
    if address is None or address == "auto" or "://" in address:  # ray://, or a Ray Client plugin's scheme
        return None
    host, _, port = address.rpartition(":")
    if not host or not re.fullmatch(r"[0-9]+", port) or int(port) > 65535:  # not isdigit(): "²" is a digit to it
        raise RunError(f"--ray {shorten(address)}: give HOST:PORT, ray://HOST:PORT, auto or local")
    return host, int(port)


def _host_of(url: str) -> str:
    """The host of a URL; "" where it has none, or cannot be read (a malformed IPv6 literal, a port that is no
    number): Ray's client would wait for its connection timeout before saying so."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is no number)
        return (parts.hostname or "").strip()
    except ValueError:
        return ""


def _reachable(address: str | None, timeout: float = 5.0) -> None:
    """A cluster's GCS address (HOST:PORT, not ray://, local or auto) must accept a connection: where nothing
    listens, ray.init retries in C++ forever."""
    import socket

    if (gcs := _gcs_address(address)) is None:
        return
    host, port = gcs
    try:
        socket.create_connection((host.strip("[]"), port), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise RunError(f"--ray {shorten(address)}: nothing answers there ({e.strerror or e})") from None


def _address_space_limited() -> bool:
    try:
        import resource
    except ImportError:  # not on Windows
        return False
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def _worker_execute(job: Job, data_arg: str | None, threads: int, fingerprint: str) -> tuple[list[dict], float]:
    """Run `job` in a worker process (or a Ray task) on the data at `data_arg`, which must be the rows whose
    fingerprint the command recorded: data changed since (or another node's copy) would be stored as that data's."""
    from .data import load_imdb

    if _WORKER.get("arg", object()) != data_arg:
        _WORKER.update(arg=data_arg, ds=load_imdb(data_arg))
    if _WORKER["ds"].fingerprint() != fingerprint:
        _WORKER.clear()  # read again for the next job: the data may be put back
        raise RunError(f"{data_arg}: not the data this command read (changed since it started, or another copy on "
                       "this worker's machine): no job ran on it; rerun the command")
    t0 = time.perf_counter()
    try:
        return execute(job, _WORKER["ds"], threads), time.perf_counter() - t0
    finally:
        _release_memory()


def _release_memory() -> None:
    """Between a worker's jobs: drop the kernels' buffers and hand freed heap back to the system, so a
    long-lived worker holds what its next job needs, not the high-water mark of every job before it."""
    import ctypes
    import gc

    from .kernels import clear_pool

    clear_pool()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc; elsewhere the allocator keeps its own counsel
    except (OSError, AttributeError):
        pass


def affinity() -> list[int]:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset), not the machine's."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return list(range(os.cpu_count() or 1))


CGROUP, MEMBERSHIP = "/sys/fs/cgroup", "/proc/self/cgroup"


def cpu_quota() -> float | None:
    """The CPUs' worth of time this process's cgroup, or one above it, may use (cgroup v2's cpu.max, v1's
    cfs_quota_us over cfs_period_us: a container's --cpus, systemd's CPUQuota, a pod's limit); None: no cap."""
    caps = []
    for folder, v2 in cgroup_folders("cpu", Path(CGROUP), MEMBERSHIP):
        with contextlib.suppress(OSError, IndexError, ValueError, ZeroDivisionError):
            if v2:
                quota, period = (folder / "cpu.max").read_text().split()[:2]
            else:
                quota, period = ((folder / f"cpu.cfs_{f}_us").read_text().split()[0] for f in ("quota", "period"))
            if quota not in ("max", "-1"):
                caps.append(int(quota) / int(period))
    return min(caps, default=None)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), or fewer where a CPU quota caps its time (rounded up):
    the lab's default --jobs, so a container given 2 CPUs' worth of a 64-core host does not start 64 workers."""
    n, quota = len(affinity()) or 1, cpu_quota()
    return n if quota is None else max(1, min(n, math.ceil(quota)))


class Runner:
    """Runs jobs in `workers` processes (1: in this process) or on Ray, each with `threads` threads."""

    def __init__(self, workers: int | None = None, threads: int = 1, ray_address: str | None = None,
                 log: Callable[[str], None] = print):
        self.threads = threads
        self.workers = workers or max(1, usable_cpus() // threads)
        self.ray_address = ray_address
        if ray_address is not None and not ray_address.strip():
            raise RunError("--ray: empty; give HOST:PORT, ray://HOST:PORT, auto or local")
        self.log = log
        self._pool, self._pool_size = None, 0
        self._workers: dict = {}  # every worker process the pool has had, by pid (a dead one leaves the pool's list)
        self._known: set[str] = set()  # keys of the jobs this runner has run or said were done (a later call reads them quietly)
        self.ran = 0  # jobs this runner has run (the others its calls returned were read from their stores)

    def __enter__(self):
        if self.ray_address:  # before the caller writes anything: a cluster that cannot be reached leaves no trace
            self._connect_ray()
        return self

    @property
    def where(self) -> str:
        """Where the jobs run, for the log."""
        if self.ray_address:
            return f"Ray ({shorten(self.ray_address)}), {self.threads} thread(s) per job"
        return f"{self.workers} worker(s) x {self.threads} thread(s)"

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self._close_pool()
        else:  # an interrupt (the workers may have died of the same signal): no waiting for them
            self._stop_pool()

    def _close_pool(self) -> None:
        """Close the pool: its workers finish and exit (waited for STOP_WAIT seconds at most), then the pool's own
        clean-up runs, bounded (`_stop_pool`). A worker killed while idle holds the task queue's lock for ever, and
        the other workers and that clean-up wait for it; killed just now, it may not look dead yet, so no check
        beforehand can be trusted. An interrupt meanwhile ends in the same stop."""
        pool = self._pool
        if pool is None:
            return
        try:
            if _dead_worker(pool, self._workers) is None:
                pool.close()
                _bounded(pool.join)
        finally:
            self._stop_pool()

    def run(self, jobs: list[Job], ds, data_arg: str | None, store: Path) -> dict[str, list[dict]]:
        """{job.key: rows} for every job, from STORE where finished earlier, else by running it."""
        store = Path(store)
        store.mkdir(parents=True, exist_ok=True)
        results: dict[str, list[dict]] = {}
        todo = []
        fingerprint = ds.fingerprint()
        for job in {j.key: j for j in jobs}.values():  # the same job asked twice runs once
            done = _read(store / f"{job.key}.json", job, fingerprint, self.threads)
            if done is not None:
                results[job.key] = done
            else:
                todo.append(job)
        for job in todo:  # refused now, not once the job has trained: what stands where its record or files go
            blocked = [(store / f"{job.key}.json", "a folder")]
            if job.args.get("keep"):  # a job that keeps its model writes STORE/<key>/ (experiments.common.fit_job)
                blocked.append((store / job.key, "a file"))
            for path, kind in blocked:
                if path.is_symlink():  # never made by rnnlab: its write would replace what the link leads to
                    raise RunError(f"{path}: a symbolic link where the job store keeps this job's "
                                   f"{'files' if kind == 'a file' else 'record'} (its write would go to "
                                   f"{os.path.realpath(path)}); move it away")
                if kind == "a folder" and path.exists() and not path.is_file() and not path.is_dir():
                    kind = "not a regular file (a FIFO, a device)"  # the record's write would refuse it, after the job
                if os.path.lexists(path) and (path.is_dir() if kind == "a folder" else not path.is_dir()):
                    raise RunError(f"{path}: {kind} where the job store keeps this job's "
                                   f"{'files' if kind == 'a file' else 'record'}; move it away")
        earlier = [k for k in results if k not in self._known]  # not those this command has run or already named
        self._known.update(earlier)
        if earlier:
            self.log(f"{len(earlier)} of {len(results) + len(todo)} jobs already done, read from {store}")
        parallel = sorted((j for j in todo if not j.exclusive), key=lambda j: -j.cost)
        count = {"done": 0}

        def finished(job: Job, result, seconds: float) -> None:
            rows, files = (result["rows"], result["files"]) if isinstance(result, dict) else (result, {})
            for name, blob in files.items():  # before the record: a recorded job has its files
                (store / job.key).mkdir(exist_ok=True)
                write_bytes(store / job.key / name, blob)
            rows = json.loads(json.dumps(jsonable(rows)))  # as stored (NaN as None): a rerun reads back the same rows
            write_json(store / f"{job.key}.json", {"fn": job.fn, "args": job.args, "data": fingerprint,
                                                   "label": job.label, "rows": rows, "rows_sha256": rows_digest(rows),
                                                   "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items())},
                                                   "seconds": round(seconds, 1), "threads": self.threads,
                                                   "rows_version": ROWS_VERSION})
            results[job.key] = rows
            self._known.add(job.key)
            self.ran += 1
            count["done"] += 1
            self.log(f"[jobs] {count['done']}/{len(todo)} {job.label}: {seconds:.0f} s")

        pooled = self.workers > 1 and len(parallel) > 1
        processes = min(self.workers, len(parallel)) if pooled else 1  # running at once (a pool kept from a larger
        # batch has idle workers); timings (exclusive) run at their own thread counts, alone, and are not counted
        if parallel and not self.ray_address and processes * self.threads > usable_cpus():  # said, not refused: a
            # Ray cluster's machines may have more CPUs than this one
            self.log(f"note: {processes} process(es) x {self.threads} thread(s) on the {usable_cpus()} CPU(s) this "
                     "process may use: the jobs share them and run slower (the results do not change)")
        alone = sum(j.exclusive for j in todo)
        then = f", then {alone} timing(s) alone" if alone else ""  # so the count adds up to the lab's first line's
        if self.ray_address:
            self._run_ray(parallel, data_arg, fingerprint, finished, then)
        elif pooled:
            self._run_pool(parallel, data_arg, fingerprint, finished, then)
        else:
            for job in parallel:
                t0 = time.perf_counter()
                finished(job, execute(job, ds, self.threads), time.perf_counter() - t0)
        for job in (j for j in todo if j.exclusive):  # timings: alone, in this process
            self.log(f"[jobs] {job.label}: running alone (a timing)")
            t0 = time.perf_counter()
            finished(job, execute(job, ds, self.threads), time.perf_counter() - t0)
        return results

    def _run_pool(self, jobs: list[Job], data_arg, fingerprint: str, finished, then: str = "") -> None:
        # multiprocessing's Pool, whose terminate() is safe mid-task (a terminated worker cannot leave a
        # queue locked for the parent, as it can with concurrent.futures' executor)
        n = min(self.workers, len(jobs))  # no process without a job: each costs its start-up and its memory
        if self._pool is not None and (self._pool_size < n or _dead_worker(self._pool, self._workers) is not None):
            self._close_pool()  # too small, or a worker died since the last batch (killed while idle): a new one
        if self._pool is None:
            try:
                # SIGTERM noted, not raised, while the workers start: raised between spawning one and sending it
                # its start-up data, it left that worker's EOFError traceback under the lab's one line
                with signals_deferred(), _ignored(signal.SIGINT, *HANGUP):  # an ignored signal survives exec
                    self._pool = multiprocessing.get_context("spawn").Pool(n, initializer=_worker_init,
                                                                           initargs=(os.getpid(),))
            except OSError as e:  # its locks are POSIX semaphores, files in /dev/shm (a container's is often small)
                shm = e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT)
                where = " in /dev/shm (where their locks live)" if shm else ""
                raise RunError(f"cannot start {n} worker processes: {fault(e)}{where}; run the jobs in this process "
                               "with --jobs 1") from None
            self._pool_size, self._workers = n, {}
        pending = {self._pool.apply_async(_worker_execute, (job, data_arg, self.threads, fingerprint)): job
                   for job in jobs}
        self.log(f"[jobs] {len(jobs)} jobs on {self._pool_size} worker processes x {self.threads} thread(s){then}")
        try:
            while pending:
                done = [r for r in pending if r.ready()]
                for r in done:
                    job = pending.pop(r)
                    rows, seconds = r.get()  # a JobError (or an interrupt) from the worker
                    finished(job, rows, seconds)
                if not done and pending:
                    _check_alive(self._pool, self._workers, len(pending))
                    time.sleep(0.05)
        except BaseException:
            self._stop_pool()  # the running jobs too: their results would be thrown away
            raise

    def _stop_pool(self) -> None:
        """Stop the worker processes now, running jobs and all. Pool.terminate() first takes the task queue's lock,
        which a worker killed from outside may have died holding, and then waits for ever (Ctrl-C and SIGTERM with
        it): so it gets STOP_WAIT seconds in a thread, and the workers are killed whatever it does."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        stopped = False
        try:
            stopped = _bounded(pool.terminate)
        finally:  # also when Ctrl-C comes meanwhile
            if not stopped:
                # terminate() told the pool's thread that replaces dead workers to stop, before it hung; one it was
                # starting then came after the list below was read, and lived on (a test's leftover worker under load)
                handler = getattr(pool, "_worker_handler", None)
                if handler is not None and handler is not threading.current_thread():
                    handler.join(STOP_WAIT)
                for p in [*getattr(pool, "_pool", []), *self._workers.values()]:
                    with contextlib.suppress(OSError, ValueError):
                        p.kill()
                        p.join(STOP_WAIT)

    def _connect_ray(self):
        """Ray, connected to the cluster (or a local one started), with CPUs enough for a job; RunError if not."""
        try:
            import ray
        except ImportError:
            raise RunError("--ray needs the ray package: pip install ray") from None
        except Exception as e:  # an install that fails its own import (protobuf's TypeError, a broken file)
            raise RunError(f"--ray: the ray package fails to import ({type(e).__name__}: {first_line(e)})") from None
        if not ray.is_initialized():
            address = None if self.ray_address == "local" else self.ray_address
            _reachable(address)
            if address is None and _address_space_limited():
                raise RunError("--ray local: Ray cannot start under a limit on address space (ulimit -v): its object "
                               "store's mmap fails and it waits for ever; lift the limit, or run without --ray")
            ray_log = logging.getLogger("ray")
            level = ray_log.level
            ray_log.setLevel(logging.ERROR)  # Ray logs and warns while it connects: the one line below is enough
            handlers = {s: signal.getsignal(s) for s in STOPS}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                             **({"num_cpus": usable_cpus()} if address is None else {}))
            except Exception as e:  # ConnectionError, ValueError, RuntimeError: whichever Ray raises for it
                raise RunError(f"--ray {shorten(self.ray_address)}: cannot start or reach Ray ({first_line(e)})") from None
            except (KeyboardInterrupt, SystemExit) as e:  # a signal while it starts (its own SIGTERM handler exits)
                with contextlib.suppress(Exception):
                    ray.shutdown()  # the processes it started so far, not left behind for minutes
                stopped_by = {int(signal.SIGTERM): "SIGTERM"}  # Ray's handler: sys.exit(15); 1 is no SIGHUP of it
                if isinstance(e, SystemExit) and e.code not in stopped_by:  # Ray itself gave up, not a signal
                    raise RunError(f"--ray {shorten(self.ray_address)}: cannot start or reach Ray (it exited with "
                                   f"code {e.code})") from None
                raise KeyboardInterrupt(stopped_by[e.code] if isinstance(e, SystemExit) else str(e)) from None
            finally:
                ray_log.setLevel(level)
                for s, h in handlers.items():  # ray.init puts its own in: Ctrl-C and SIGTERM stay this command's
                    if h is not None and threading.current_thread() is threading.main_thread():
                        signal.signal(s, h)
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < self.threads:  # a task asking for more CPUs than the cluster has waits forever
            raise RunError(f"--ray {shorten(self.ray_address)}: the cluster has {cpus:g} CPUs, fewer than --threads "
                           f"{self.threads}: no job could start")
        return ray

    def _run_ray(self, jobs: list[Job], data_arg, fingerprint: str, finished, then: str = "") -> None:
        ray = self._connect_ray()
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_worker_execute)
        pending = {remote.remote(job, data_arg, self.threads, fingerprint): job for job in jobs}
        self.log(f"[jobs] {len(jobs)} jobs on Ray ({self.ray_address}), {self.threads} thread(s) each{then}")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    rows, seconds = ray.get(done[0])
                except ray.exceptions.RayError as e:  # the job's own error, or its worker or the raylet died
                    why = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(e, "cause", None) or e)).strip().splitlines()
                    raise JobError(f"job '{job.label}' failed on Ray: {why[-1][:300] if why else type(e).__name__}") from None
                finished(job, rows, seconds)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


STOP_WAIT = 5.0  # seconds a pool's join or terminate gets before the workers are killed


def _bounded(fn) -> bool:
    """Run fn() in a daemon thread for at most STOP_WAIT seconds; whether it finished (one that waits on a lock a
    dead worker holds is left behind)."""
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(STOP_WAIT)
    return not thread.is_alive()


def _dead_worker(pool, workers: dict):
    """A worker process of `pool` that has died, or None. `workers` collects every worker seen so far: the pool
    drops a dead one from its list and starts another in its place."""
    for p in getattr(pool, "_pool", []):  # multiprocessing keeps its worker processes there
        workers.setdefault(p.pid, p)
    return next((p for p in workers.values() if p.exitcode is not None), None)


def _check_alive(pool, workers: dict, unfinished: int) -> None:
    """JobError if a worker process of `pool` has died (the kernel's out-of-memory killer, kill -9): its job never
    reports back, so the lab would wait for ever."""
    dead = _dead_worker(pool, workers)
    if dead is None:
        return
    code = dead.exitcode
    how = f"exit code {code}"
    if code < 0:
        with contextlib.suppress(ValueError):
            how = f"killed by {signal.Signals(-code).name}"
        if -code == signal.SIGKILL:
            how += ": the kernel's out-of-memory killer, or kill -9"
    raise JobError(f"a worker process died ({how}) with {unfinished} job(s) unfinished")


def rows_digest(rows: list) -> str:
    """sha256 of a job's rows as its record stores them (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _rows_intact(d: dict) -> bool:
    """The record's rows are what the job returned: their recorded sha256 matches (a record without one, made
    before rnnlab recorded it or edited by hand, cannot be checked: the job runs again)."""
    return isinstance(d.get("rows_sha256"), str) and d["rows_sha256"] == rows_digest(d["rows"])


def _read(path: Path, job: Job, fingerprint: str, threads: int) -> list[dict] | None:
    """A finished job's rows, or None when missing, unreadable, made by another job, on other data, at another
    thread count (its numbers depend on it: the job runs again, at this one) or by an rnnlab that measured otherwise
    (ROWS_VERSION), or when its rows or one of its files are not what it wrote (a damaged record or file: the job
    runs again)."""
    if not path.exists():
        return None
    try:
        d = read_json(path)
    except RunError:
        return None
    if not (isinstance(d, dict) and isinstance(d.get("rows"), list) and _rows_intact(d) and d.get("fn") == job.fn
            and d.get("data") == fingerprint and d.get("threads") == threads and d.get("rows_version") == ROWS_VERSION
            and _files_intact(path.parent / job.key, d.get("files", {}))
            and json.dumps(d.get("args"), sort_keys=True) == json.dumps(job.args, sort_keys=True, default=str)):
        return None
    return d["rows"]


def _files_intact(d: Path, files) -> bool:
    """Every file of a job record exists with its recorded sha256 (records without hashes: exists)."""
    if not isinstance(files, (dict, list)):
        return False
    for name in files:
        f = d / str(name)
        try:
            if not f.is_file() or (isinstance(files, dict) and hashlib.sha256(f.read_bytes()).hexdigest() != files[name]):
                return False
        except OSError:
            return False
    return True
