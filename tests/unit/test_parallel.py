# SPDX-License-Identifier: GPL-2.0-or-later
import os
import signal

import pytest

from systraq import parallel


def _count_down(task, pool):
    """Each task n > 0 hands n - 1 to whoever is free, and reports n."""
    if task > 0:
        pool.submit(task - 1)
    pool.emit([(os.getpid(), task)])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_task_and_every_submitted_task_is_handled_once(workers):
    seen = []
    parallel.run(_count_down, [5, 3, 0], seen.extend, workers)
    assert sorted(task for _pid, task in seen) == sorted([5, 4, 3, 2, 1, 0, 3, 2, 1, 0, 0])


def test_work_runs_in_other_processes_when_there_are_workers():
    seen = []
    parallel.run(_count_down, list(range(20)), seen.extend, 2)
    assert os.getpid() not in {pid for pid, _task in seen}


def test_one_worker_runs_in_this_process():
    seen = []
    parallel.run(_count_down, [2], seen.extend, 1)
    assert {pid for pid, _task in seen} == {os.getpid()}


def _fail_on_three(task, pool):
    if task == 3:
        raise OSError(5, "Input/output error", "/some/file")
    pool.emit([task])


def test_a_worker_that_raises_makes_the_run_fail_with_its_message():
    with pytest.raises(parallel.WorkerFailed, match="Input/output error.*/some/file"):
        parallel.run(_fail_on_three, list(range(8)), lambda batch: None, 2)


def _die_on_three(task, pool):
    if task == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    pool.emit([task])


def test_a_worker_that_dies_makes_the_run_fail_instead_of_hanging():
    with pytest.raises(parallel.WorkerFailed, match="died"):
        parallel.run(_die_on_three, list(range(8)), lambda batch: None, 2)


def test_hungry_says_whether_a_worker_waits_for_work():
    def handle(task, pool):
        pool.emit([pool.hungry()])
    seen = []
    parallel.run(handle, [1], seen.extend, 1)
    assert seen == [False]      # alone: nobody to give work to
