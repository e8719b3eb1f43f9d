"""A warm ``lvp serve`` child reused between cases, behind the same runner interface as a one-case child.

Starting Python, numpy, SimpleITK, scipy, ONNX Runtime and the model costs about as much as the
case itself (docs/performance.md), so :class:`WorkerRunner` keeps one ``python -m lvp serve``
child per (python, environment, model folder, device) and sends it each ``lvp infer`` command as a
job (protocol: :mod:`lvp.commands.serve`). Its :meth:`WorkerRunner.start` takes the very command
line :func:`.process.infer_command` builds and returns a :class:`WorkerJob`, which offers what
:class:`.process.RunningProcess` offers (``poll``, ``progress_messages``, ``cancel``, ``wait``...),
so the logic, the workflow and the widget's timer polling do not change. Anything that is not
``python -m lvp infer`` (pip) runs as its own child, as before.

Life cycle:

* **Start**: lazily, on the first job (the module does not pre-start it on entering: before the
  first Run the analysis packages may not be installed yet and most reading sessions never run
  an analysis, while the worker holds the model in memory). The job line is written at once; the
  worker reads it once it is ready, so nothing waits for it.
* **Reuse / restart**: a job with the same key goes to the same live worker; a dead worker (it
  crashed, or a job was cancelled) or a changed key (another model folder, device, Python, a
  model folder whose files changed) gets a new one. The replaced worker's stdin is closed: it
  finishes the jobs it was already given and exits by itself.
* **Cancel**: :meth:`WorkerJob.cancel` ends the worker's whole process group, as a one-case child
  is cancelled (the running case leaves no result folder); the next job starts a new worker.
* **A failed job** (bad input) ends with its exit code and one-line error; the worker stays.
* **Shut down**: :meth:`WorkerRunner.shutdown` closes stdin, waits briefly, then kills the process
  group: called by the module's ``cleanup`` (module unloaded, application closing), after a pip
  install (the worker imported the packages as they were), and by a
  finaliser when the runner is garbage-collected or the interpreter exits. If Slicer crashes the
  worker sees the end of its stdin and exits after the case it is on.
* **Fallback**: a worker that ends before it is ready (an older core without ``lvp serve``, a
  missing package) hands its job to a one-process-per-case child and says so in the log; for an
  older core that is remembered, so later cases do not try again.

Threads: the worker's stdout/stderr are read by threads (:class:`.process.RunningProcess`), which
route each line to its job; the GUI thread only polls.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from .process import (
    ProcessRunner,
    RunningProcess,
    Waitable,
    readable_error,
    take_lines,
)

log = logging.getLogger(__name__)

# What an ``lvp`` without the ``serve`` command, or with an older one (an option unknown), answers.
NO_SERVE = "invalid choice: 'serve'"
NO_OPTION = "unrecognized arguments: "


def infer_job_args(args: Sequence[str]) -> list[str] | None:
    """The ``lvp infer`` arguments of ``[python, "-m", "lvp", "infer", ...]``, else None."""
    args = [str(a) for a in args]
    if len(args) >= 4 and args[1:4] == ["-m", "lvp", "infer"]:
        return args[4:]
    return None


def _option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else default


def model_fingerprint(folder: str | None) -> tuple:
    """Names, sizes and modification times of a model folder's files: a replaced model shows."""
    if not folder or not Path(folder).is_dir():
        return ()
    root = Path(folder)
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    return tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


class WorkerProcess(RunningProcess):
    """A running ``lvp serve`` child: its stdout lines are routed to the :class:`WorkerJob` they belong to."""

    def __init__(self, popen: subprocess.Popen, key: tuple) -> None:
        """Wrap ``popen`` (stdin a pipe) for jobs of ``key``; reader threads start at once."""
        self.key = key
        self.ready = False
        self.readySeconds: float | None = None
        self.startedAt = time.monotonic()
        self._lock = threading.Lock()
        self._jobs: dict[int, WorkerJob] = {}  # sent, not yet done
        self._current: WorkerJob | None = None
        self._nextId = 1
        self.outside: list[str] = []
        super().__init__(popen)

    # The reader threads' sinks (RunningProcess calls them for every line).
    def _onStdout(self, line: str) -> None:
        data = None
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = None
        event = data.get("event") if isinstance(data, dict) else None
        with self._lock:
            if event == "ready":
                self.ready = True
                self.readySeconds = time.monotonic() - self.startedAt
            elif event == "job":
                self._current = self._jobs.get(data.get("job"))
                if self._current is not None:
                    self._current.started = True
            elif event == "job_done":
                job = self._jobs.pop(data.get("job"), None)
                if job is not None:
                    job.finished(int(data.get("exit_code", 1)), str(data.get("error") or ""))
                self._current = None
            elif self._current is not None:
                self._current.lines.put(line)
            else:  # outside any job (a library's message at start-up): the recent ones are kept
                self.outside = (self.outside + [line])[-200:]

    def _onStderr(self, line: str) -> None:
        self._stderr.append(line)
        if len(self._stderr) > 2000:  # a long session: keep the recent lines only
            del self._stderr[:-1000]
        with self._lock:
            if self._current is not None:
                self._current.stderrLines.append(line)

    @property
    def alive(self) -> bool:
        """True while the worker runs and its stdin is open (it can take another job)."""
        return self.popen.poll() is None and self.popen.stdin is not None and not self.popen.stdin.closed

    @property
    def busy(self) -> bool:
        """True while a job sent to it has not finished."""
        with self._lock:
            return bool(self._jobs)

    def send(self, job: WorkerJob) -> None:
        """Write ``job`` to the worker's stdin (it reads it when ready; never waits for that)."""
        with self._lock:
            job.id, self._nextId = self._nextId, self._nextId + 1
            self._jobs[job.id] = job
        self.popen.stdin.write(json.dumps({"job": job.id, "args": job.jobArgs}) + "\n")
        self.popen.stdin.flush()

    def closeInput(self) -> None:
        """Close stdin: the worker finishes the jobs it has and exits (exit code 0)."""
        try:
            if self.popen.stdin is not None and not self.popen.stdin.closed:
                self.popen.stdin.close()
        except OSError:  # the worker is gone already (broken pipe)
            pass

    def shutdown(self, grace_s: float = 2.0) -> int | None:
        """Close stdin, wait up to ``grace_s`` for a clean exit, then end the process group."""
        self.closeInput()
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        cancelled = self.cancelled
        self.cancel(grace_s)  # SIGTERM/SIGKILL to the group: grandchildren too, even after a clean exit
        self.cancelled = cancelled
        return self.popen.poll()


class WorkerJob(Waitable):
    """One ``lvp infer`` command run by a :class:`WorkerProcess`; the interface of :class:`RunningProcess`."""

    def __init__(self, runner: WorkerRunner, args: list[str], env: dict | None, cwd, worker: WorkerProcess) -> None:
        """A job of ``args`` (the full ``python -m lvp infer ...`` line) on ``worker``."""
        self.runner = runner
        self.args = args
        self.env = env
        self.cwd = cwd
        self.jobArgs = infer_job_args(args) or []
        self.worker = worker
        self.id = 0
        self.cancelled = False
        self.started = False  # the worker began it (its "job" line arrived)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderrLines: list[str] = []
        self.exitCode: int | None = None
        self.error = ""
        self.delegate = None  # a RunningProcess / WorkerJob that runs this job instead (fallback, restart)
        self._stdoutTail: list[str] = []
        self._lock = threading.Lock()
        try:
            worker.send(self)
        except OSError:  # the worker ended just now (broken pipe): poll() runs the job elsewhere
            pass

    def finished(self, code: int, error: str) -> None:
        """The worker's ``job_done`` (called by its reader thread)."""
        self.error, self.exitCode = error, code

    @property
    def pid(self) -> int:
        """The process id of the worker running this job (its process group too)."""
        return self.delegate.pid if self.delegate is not None else self.worker.pid

    def poll(self) -> int | None:
        """The job's exit code, or None while it runs (never blocks for long)."""
        with self._lock:
            if self.delegate is not None:
                return self.delegate.poll()
            if self.exitCode is not None:
                return self.exitCode
            worker = self.worker
            if worker.popen.poll() is None:
                return None
            worker.drain()  # a job_done printed just before the worker ended
            if self.exitCode is not None:
                return self.exitCode
            if self.cancelled or self.started:
                code = worker.popen.returncode
                self.exitCode = code if code else 1  # ended mid-job: never a success
                return self.exitCode
            # The worker ended before this job began: it runs elsewhere.
            self.delegate = self.runner.restart(self)
            return None

    def new_lines(self) -> list[str]:
        """Stdout lines of this job since the last call (never blocks)."""
        if self.delegate is not None:
            return self.delegate.new_lines()
        return take_lines(self.lines, self._stdoutTail)

    @property
    def stdout_tail(self) -> str:
        """The last 200 stdout lines of this job read so far."""
        return self.delegate.stdout_tail if self.delegate is not None else "".join(self._stdoutTail)

    @property
    def stderr(self) -> str:
        """What the worker wrote to stderr while this job ran."""
        return self.delegate.stderr if self.delegate is not None else "".join(self.stderrLines)

    def error_message(self) -> str:
        """A one-line description of why the job failed."""
        if self.cancelled:
            return "cancelled"
        if self.delegate is not None:
            return self.delegate.error_message()
        return self.error or readable_error(self.stderr or self.worker.stderr, self.poll())

    def cancel(self, grace_s: float = 3.0) -> None:
        """End the job: the worker's whole process group goes (the next job starts a new worker)."""
        with self._lock:
            self.cancelled = True
            delegate = self.delegate
        if delegate is not None:
            delegate.cancel(grace_s)
            return
        self.worker.cancel(grace_s)

    def _settle(self) -> None:
        if self.delegate is not None:  # a one-case child's last lines (a worker's come before job_done)
            self.delegate._settle()

    def _waitName(self) -> str:
        return f"job of worker {self.pid}"


def _pythonKey(args: list[str], env: dict | None) -> tuple:
    """The Python and environment of a command: what a worker's core (and its ``lvp serve``) depends on."""
    return (str(args[0]), tuple(sorted((env or {}).items())))


def _shutdown_all(workers: list[WorkerProcess], grace_s: float) -> None:
    for worker in list(workers):
        worker.shutdown(grace_s)
    workers.clear()


class WorkerRunner:
    """A runner (``start(args, env, cwd)``) sending ``lvp infer`` commands to a warm ``lvp serve``."""

    def __init__(self, processRunner: ProcessRunner | None = None, shutdownGrace_s: float = 2.0) -> None:
        """``processRunner`` starts the workers and every other child (default :class:`ProcessRunner`)."""
        self.processRunner = processRunner or ProcessRunner()
        self.shutdownGrace_s = shutdownGrace_s
        self.worker: WorkerProcess | None = None
        self._workers: list[WorkerProcess] = []  # every worker not yet shut down (replaced ones too)
        self._noWorker: set[tuple] = set()  # (python, env) whose core has no `lvp serve`
        self._lock = threading.Lock()
        # Also when the logic is dropped without a cleanup, and at interpreter exit (a script).
        self._finalizer = weakref.finalize(self, _shutdown_all, self._workers, shutdownGrace_s)

    @staticmethod
    def workerKey(args: list[str], env: dict | None) -> tuple:
        """What a worker is kept for: python, environment, model folder (and its files), device."""
        jobArgs = infer_job_args(args) or []
        model = _option(jobArgs, "--model")
        return (*_pythonKey(args, env), model, _option(jobArgs, "--device", "auto"), model_fingerprint(model))

    def workerCommand(self, python: str, model: str | None, device: str) -> list[str]:
        """``python -m lvp serve`` for this model and device; no DICOM warm-up (jobs read NIfTI copies)."""
        return [python, "-m", "lvp", "serve", "--device", device, "--no-warm-dicom",
                *(["--model", model] if model else [])]

    def start(self, args: Sequence[str], env: dict | None = None, cwd: Path | None = None):
        """A :class:`WorkerJob` for ``python -m lvp infer ...``; any other command runs as its own child.

        So does an ``lvp infer`` with its own ``cwd`` (the worker's is fixed: relative paths in the
        command would name other files there).
        """
        args = [str(a) for a in args]
        jobArgs = infer_job_args(args)
        if jobArgs is None or cwd is not None or _pythonKey(args, env) in self._noWorker:
            return self.processRunner.start(args, env=env, cwd=cwd)
        return WorkerJob(self, args, env, cwd, self._workerFor(args, env))

    def _workerFor(self, args: list[str], env: dict | None) -> WorkerProcess:
        key = self.workerKey(args, env)
        jobArgs = infer_job_args(args) or []
        # A --labels / --semantic job (Recompute) loads no model: any live worker of this Python will do.
        modelFree = "--labels" in jobArgs or "--semantic" in jobArgs
        with self._lock:
            self._reap()
            current = self.worker
            if current is not None and current.alive:
                if current.key == key or (modelFree and current.key[:2] == key[:2]):
                    return current
                log.info("LumbarVNetPro: the model or device changed; the warm worker %s is replaced", current.pid)
                current.closeInput()  # it finishes what it was given, then exits
            _, _, model, device, _ = key
            popen = self.processRunner.popen(self.workerCommand(args[0], model, device), env=env, stdin=True)
            self.worker = WorkerProcess(popen, key)
            self._workers.append(self.worker)
            log.info("LumbarVNetPro: started the warm worker %s (%s)", self.worker.pid, " ".join(popen.args[1:]))
            return self.worker

    def _reap(self) -> None:
        """Forget workers that have ended (the zombie is collected by ``poll``)."""
        for worker in list(self._workers):
            if worker.popen.poll() is not None:
                self._workers.remove(worker)

    def restart(self, job: WorkerJob):
        """Run ``job`` elsewhere: its worker ended before beginning it.

        Not ready yet: the worker could not start (an older core, a missing package), so the job
        runs as a one-case child, as before the worker existed. Ready: the worker ended between
        jobs (killed, crashed), so a new worker takes it.
        """
        worker = job.worker
        if worker.ready:
            return self.start(job.args, job.env, job.cwd)
        worker.drain()
        why = readable_error(worker.stderr, worker.popen.returncode)
        if NO_SERVE in worker.stderr or NO_OPTION in worker.stderr:
            self._noWorker.add(_pythonKey(job.args, job.env))
            log.warning("LumbarVNetPro: this core has no warm worker (lvp serve); every case runs in its own "
                        "process (slower start)")
        else:
            log.warning("LumbarVNetPro: the warm worker could not start (%s); this case runs in its own process",
                        why)
        return self.processRunner.start(job.args, env=job.env, cwd=job.cwd)

    @property
    def workerPids(self) -> list[int]:
        """Process ids of the workers still running (the current one last)."""
        return [w.pid for w in self._workers if w.popen.poll() is None]

    def shutdown(self, grace_s: float | None = None) -> None:
        """End every worker: stdin closed, a short wait, then its process group killed."""
        with self._lock:
            _shutdown_all(self._workers, self.shutdownGrace_s if grace_s is None else grace_s)
            self.worker = None

