"""Worker processes, so that scoring uses every CPU core (docs/scaling.md).

`vad run` splits its cameras into groups, one process per group (`run_camera_groups`), each
with its own pipeline and store connection running `vad.cameras.run_cameras`; a camera stays in
one process, so its frames are scored in order. `vad serve` starts several members of one
consumer group (`run_processes`): Kafka balances the partitions among them and each member
commits only what it has settled, exactly as a lone worker does.

Processes are spawned (they inherit nothing but their arguments), use `workers.threads`
torch/OpenCV threads each, die with their parent (as a crashed worker would), and stop
together: SIGTERM or Ctrl-C sets one shared stop event, and a process that fails stops the
others.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vad.config import VadConfig
from vad.config.workers import WorkersConfig
from vad.errors import VadError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
STOP_POLL_S = 0.1  # how often a worker process looks at the shared stop event


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def worker_count(config: WorkersConfig, jobs: int | None = None) -> int:
    """Processes to run: as configured, else one per core; never more than `jobs`."""
    count = config.processes or available_cores()
    return max(1, min(count, jobs) if jobs is not None else count)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "OPENCV_FOR_THREADS_NUM")


def limit_threads(threads: int) -> None:
    """Thread pools of this process: torch, BLAS and OpenCV read these variables when they
    load; those already loaded are told directly."""
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)


def run_processes(target: Callable[..., Any], jobs: Sequence[tuple], threads: int,
                  stop: threading.Event) -> list[Any]:
    """`target(*job, stop_event)` in one spawned process per job; their return values in job
    order. Setting `stop` stops them all (each one's stop event follows a shared one, as do
    SIGINT and SIGTERM in that process); the first failure
    (a VadError's message, or the name and text of another exception) stops the others and
    is raised as a VadError once every process has ended."""
    context = multiprocessing.get_context("spawn")
    shared_stop = context.Event()
    results = context.Queue()
    processes = [context.Process(target=_child, name=f"vad-worker-{index}", daemon=False,
                                 args=(target, job, threads, shared_stop, results, index,
                                       os.getpid()))
                 for index, job in enumerate(jobs)]
    for process in processes:
        process.start()
    outcomes: dict[int, tuple[bool, Any]] = {}
    try:
        while len(outcomes) < len(processes):
            if stop.is_set():
                shared_stop.set()
            try:
                index, ok, value = results.get(timeout=0.2)
            except queue.Empty:
                for index, process in enumerate(processes):
                    if index not in outcomes and not process.is_alive():
                        outcomes[index] = (False, f"worker process {index} ended without a "
                                                  f"result (exit code {process.exitcode})")
                        shared_stop.set()
                continue
            outcomes[index] = (ok, value)
            if not ok:
                shared_stop.set()
    finally:
        shared_stop.set()
        for process in processes:
            process.join()
    failures = [value for ok, value in outcomes.values() if not ok]
    if failures:
        raise VadError(failures[0])
    return [outcomes[index][1] for index in range(len(processes))]


def _child(target: Callable[..., Any], job: tuple, threads: int, shared_stop, results,
           index: int, parent: int) -> None:
    _die_with_parent(parent)
    # The target gets a stop event of its own, set by the shared one, a signal or the target
    # itself: nothing waits on the shared event (a process that exits while waiting on a
    # multiprocessing Event leaves it unable to be set).
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=_follow, args=(shared_stop, stop), daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format=f"worker {index}: %(levelname)s "
                                                      "%(name)s: %(message)s")
    try:
        limit_threads(threads)
        results.put((index, True, target(*job, stop)))
    except VadError as exc:
        results.put((index, False, str(exc)))
    except BaseException as exc:  # a bug: its traceback in the log, its message to the parent
        log.exception("worker process %d failed", index)
        results.put((index, False, f"worker process {index}: {type(exc).__name__}: {exc}"))


def _follow(shared_stop, stop: threading.Event) -> None:
    while not stop.wait(STOP_POLL_S):
        if shared_stop.is_set():
            stop.set()


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies, so that a killed `vad serve` leaves no
    members behind (Linux; elsewhere they stop when their work ends)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


@dataclass
class GroupResult:
    """What one camera group's process did, in plain values."""

    alert_ids: list[str] = field(default_factory=list)
    errors: dict[str, tuple[bool, str]] = field(default_factory=dict)  # camera -> (VadError?, text)
    stopped: bool = False
    explanation_failures: int = 0


def camera_groups(cameras: Sequence[Any], workers: int) -> list[list[Any]]:
    """Cameras dealt round-robin into `workers` groups."""
    return [list(cameras[i::workers]) for i in range(workers) if cameras[i::workers]]


def run_camera_groups(config: VadConfig, cameras: Sequence[tuple[str, str]], workers: int,
                      build_reasoner: Callable[[VadConfig], Any], stop: threading.Event,
                      progress: bool) -> list[GroupResult]:
    """`cameras` (source, camera id) split over `workers` processes; `build_reasoner` (a
    module-level function: it is sent to the processes) makes each process's reasoner."""
    groups = camera_groups(list(cameras), workers)
    firsts = [sum(len(g) for g in groups[:i]) for i in range(len(groups))]
    jobs = [(config, group, build_reasoner, progress, first)
            for group, first in zip(groups, firsts)]
    return run_processes(_run_group, jobs, config.workers.threads, stop)


def _run_group(config: VadConfig, cameras: list[tuple[str, str]],
               build_reasoner: Callable[[VadConfig], Any], progress: bool, first_bar: int,
               stop) -> GroupResult:
    from streams.sources import open_source
    from vad.cameras import run_cameras
    from vad.pipeline import Pipeline, alert_listeners
    from vad.stores import open_store

    sources = [open_source(spec, camera, config.camera(camera).live) for spec, camera in cameras]
    reasoner = build_reasoner(config)
    with open_store(config.store) as store:
        pipeline = Pipeline.from_config(config, store, reasoner)
        pipeline.listeners += alert_listeners(config, store)  # event clips, alert outputs
        try:
            run = run_cameras(sources, pipeline, store, stop, progress, first_bar)
        finally:
            pipeline.close()
    return GroupResult([alert.id for alert in run.alerts],
                       {camera: (isinstance(error, VadError), str(error))
                        for camera, error in run.errors.items()},
                       run.stopped, pipeline.explanation_failures)
