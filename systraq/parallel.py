# SPDX-License-Identifier: GPL-2.0-or-later
"""Running file-system work on every CPU: a small pool of forked workers.

Threads are not enough for systraq's scans.  hashlib releases the GIL
while it hashes, but the work around each file (stat, open, fstat,
building the record) holds it, and with 40 % of /usr files under 64 KiB
that work is most of the time: on two cores a thread pool scanned
76,000 files in 3.5 s where two processes take about half of that.

The pool is built for walks whose work is only discovered on the way:

- Tasks sit in one queue shared by all workers.  A worker handling a task
  may ``submit`` more tasks (a subdirectory it would rather give away);
  ``hungry()`` tells it whether another worker is idle and would take one.
- A worker ``emit``s results in batches; the parent hands each batch to
  its ``on_batch`` callback as it arrives, so results never pile up in a
  pipe nobody reads.
- The pool ends when every task submitted has been handled.  A worker
  that raises or dies makes ``run`` raise in the parent, after the other
  workers were stopped: a half-finished scan is never taken for a
  complete one.

Workers are forked, so they share the parent's read-only data (the
previous state in a quick scan) without copying it through a pipe.  With
one worker, or when forking is pointless, everything runs in the calling
process, which is also what the unit tests of callers mostly exercise.
"""

import multiprocessing
import os
import queue
import traceback

from systraq.errors import RunError

# How long the parent waits on its result queue before looking whether a
# worker died without saying so (killed by a signal, out of memory).
_POLL = 0.5


class WorkerFailed(RunError):
    """A worker raised or died; the work is incomplete."""


def default_workers():
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Inline:
    """The pool's interface for work done in the calling process."""

    def __init__(self, on_batch):
        self.tasks = []
        self.on_batch = on_batch

    def submit(self, task):
        self.tasks.append(task)

    def emit(self, batch):
        if batch:
            self.on_batch(batch)

    @staticmethod
    def hungry():
        return False


class _Worker:
    """The pool's interface inside a forked worker."""

    def __init__(self, tasks, results, counters):
        self.tasks = tasks
        self.results = results
        self.outstanding, self.queued, self.idle = counters

    def submit(self, task):
        with self.outstanding.get_lock():
            self.outstanding.value += 1
        with self.queued.get_lock():
            self.queued.value += 1
        self.tasks.put(task)

    def emit(self, batch):
        if batch:
            self.results.put(("batch", batch))

    def hungry(self):
        """True when a worker waits and no queued task is there for it."""
        return self.idle.value > self.queued.value


def run(handle, tasks, on_batch, workers=None):
    """Call ``handle(task, pool)`` for every task, in ``workers`` processes.

    ``handle`` may call ``pool.submit(task)``, ``pool.emit(batch)`` (a
    list) and ``pool.hungry()``.  ``on_batch(batch)`` runs in the parent.
    """
    tasks = list(tasks)
    workers = default_workers() if workers is None else workers
    if workers <= 1 or not tasks:
        inline = _Inline(on_batch)
        inline.tasks = tasks
        while inline.tasks:
            handle(inline.tasks.pop(), inline)
        return
    _run_forked(handle, tasks, on_batch, workers)


def _run_forked(handle, tasks, on_batch, workers):
    ctx = multiprocessing.get_context("fork")
    task_queue = ctx.Queue()
    results = ctx.Queue()
    # Tasks submitted and not yet finished; tasks in the queue; workers
    # waiting for one.
    counters = (ctx.Value("q", len(tasks)), ctx.Value("q", len(tasks)), ctx.Value("i", 0))
    procs = [ctx.Process(target=_work, args=(handle, task_queue, results, counters, workers),
                         daemon=True) for _ in range(workers)]
    # Fork before the first put starts the queue's feeder thread: a fork
    # while another thread runs may leave a lock held in the child
    # (Python 3.12 and later warn about it).
    for proc in procs:
        proc.start()
    for task in tasks:
        task_queue.put(task)
    failure = None
    finished = 0
    try:
        while finished < workers:
            try:
                kind, payload = results.get(timeout=_POLL)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    failure = f"a worker died (exit status {dead[0].exitcode})"
                    break
                continue
            if kind == "batch":
                on_batch(payload)
            elif kind == "done":
                finished += 1
            else:
                failure = payload
                break
    finally:
        complete = failure is None and finished == workers
        if not complete:
            for proc in procs:
                proc.kill()
        for proc in procs:
            proc.join()
        task_queue.close()
        results.close()
        if complete:
            # Every task was taken: the feeder thread has nothing left to
            # write and ends now, before anything else forks.
            task_queue.join_thread()
        else:
            # What is left in it has no reader: never wait for it.
            task_queue.cancel_join_thread()
    if failure is not None:
        raise WorkerFailed(failure)


def _work(handle, task_queue, results, counters, workers):
    pool = _Worker(task_queue, results, counters)
    outstanding, queued, idle = counters
    try:
        while True:
            with idle.get_lock():
                idle.value += 1
            task = task_queue.get()
            with idle.get_lock():
                idle.value -= 1
            if task is None:
                break
            with queued.get_lock():
                queued.value -= 1
            handle(task, pool)
            with outstanding.get_lock():
                outstanding.value -= 1
                last = outstanding.value == 0
            if last:
                for _ in range(workers):
                    task_queue.put(None)
        results.put(("done", None))
    except BaseException as exc:  # reported to the parent, which raises
        if isinstance(exc, OSError):
            message = str(exc)
        else:
            message = "".join(traceback.format_exception_only(exc)).strip()
        results.put(("error", message))
    finally:
        # Let the queues' feeder threads hand over what was put before
        # the process ends.
        results.close()
        results.join_thread()
