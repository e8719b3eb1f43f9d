"""Running the core's CLI in a child process: progress, cancel of the whole tree, readable errors.

Inference runs out of Slicer's process so a crash, a CUDA error or a hung worker cannot take
the application down, and Cancel can end everything the child started (data loader workers,
a model download helper) by killing its process group / session.

The logic takes a runner object (:class:`ProcessRunner` or anything with the same ``start``)
so tests and other front ends can substitute their own; the widget polls the returned
:class:`RunningProcess` from a Qt timer, a script calls :meth:`RunningProcess.wait`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ProgressCallback = Callable[[str, float], None]


@dataclass
class Progress:
    """One stage message of ``lvp infer --progress-json``."""

    stage: str
    progress: float
    extra: dict = field(default_factory=dict)


# What the reader sees for each stage key of ``lvp infer --progress-json`` (lvp.pipeline.STAGE_START).
STAGE_LABELS = {
    "read": "Reading the image",
    "network": "Segmenting (neural network)",
    "labelling": "Numbering the levels",
    "measure": "Measuring",
    "grade": "Grading",
    "planes": "Planning the axial scan planes",
    "axial": "Reading the axial series",
    "write": "Writing the results",
    "figure": "Drawing the report figure",
    "done": "Finishing",
}


def stage_label(stage: str) -> str:
    """The readable name of a stage key; an unknown key is shown with its underscores as spaces."""
    return STAGE_LABELS.get(stage, str(stage).replace("_", " ").capitalize())


def parse_progress(line: str) -> Progress | None:
    """A :class:`Progress` from one stdout line, or None when the line is not a stage message."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "stage" not in data:
        return None
    try:
        progress = float(data.get("progress", 0.0))
    except (TypeError, ValueError):
        progress = 0.0
    extra = {k: v for k, v in data.items() if k not in ("stage", "progress")}
    return Progress(str(data["stage"]), min(max(progress, 0.0), 1.0), extra)


def readable_error(stderr: str, returncode: int | None) -> str:
    """One line for the user from a failed child's stderr.

    The CLI prints ``lvp infer: error: <message>`` for user errors; for anything else (a
    traceback) the last line names the exception, which is more useful than the whole trace.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    if lines:
        return lines[-1]
    if returncode is not None and returncode < 0:
        return f"the process was ended by signal {-returncode}"
    return f"the process failed with exit code {returncode}"


TAIL_LINES = 200  # stdout lines kept for an error message


def take_lines(lines: queue.Queue, tail: list[str]) -> list[str]:
    """Every line a reader thread queued so far (never blocks); also kept in ``tail`` (the last 200)."""
    taken = []
    while True:
        try:
            taken.append(lines.get_nowait())
        except queue.Empty:
            break
    tail.extend(taken)
    del tail[:-TAIL_LINES]
    return taken


class Waitable:
    """Stage messages and a blocking :meth:`wait`, over a subclass's ``poll``, ``new_lines`` and ``cancel``.

    Shared by :class:`RunningProcess` and the warm worker's job (:class:`.worker.WorkerJob`), so a
    script waits on either the same way.
    """

    def progress_messages(self) -> list[Progress]:
        """Stage messages among the new stdout lines."""
        return [p for p in map(parse_progress, self.new_lines()) if p is not None]

    def _settle(self) -> None:
        """Called once the exit code is known, before the last messages are reported."""

    def _waitName(self) -> str:
        return f"process {self.pid}"

    def wait(
        self, progress: ProgressCallback | None = None, poll_s: float = 0.05, timeout_s: float | None = None
    ) -> int:
        """Block until it ends, reporting stage messages; returns the exit code."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            code = self.poll()
            if code is not None:
                self._settle()
            for message in self.progress_messages():
                if progress:
                    progress(message.stage, message.progress)
            if code is not None:
                return code
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"{self._waitName()} did not finish in {timeout_s} s")
            time.sleep(poll_s)


class RunningProcess(Waitable):
    """A started child process whose stdout/stderr are collected by reader threads."""

    def __init__(self, popen: subprocess.Popen) -> None:
        """Wrap ``popen`` (started by :class:`ProcessRunner`) and start reading its output."""
        self.popen = popen
        self.cancelled = False
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._stdout_tail: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(popen.stdout, self._onStdout), daemon=True),
            threading.Thread(target=self._read, args=(popen.stderr, self._onStderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream, sink: Callable[[str], None]) -> None:  # a text stream
        for line in iter(stream.readline, ""):
            sink(line)
        stream.close()

    # Where the reader threads put each line (a warm worker routes them to its jobs instead).
    def _onStdout(self, line: str) -> None:
        self._lines.put(line)

    def _onStderr(self, line: str) -> None:
        self._stderr.append(line)

    @property
    def pid(self) -> int:
        """The child's process id (also its process group / session id)."""
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit code, or None while the child runs."""
        return self.popen.poll()

    def new_lines(self) -> list[str]:
        """Stdout lines received since the last call (never blocks)."""
        return take_lines(self._lines, self._stdout_tail)

    def drain(self, timeout_s: float = 0.5) -> None:
        """Let the reader threads take the last lines of an ended child."""
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _settle(self) -> None:
        self.drain(5)

    @property
    def stdout_tail(self) -> str:
        """The last 200 stdout lines read so far (by :meth:`new_lines`, :meth:`wait` or a poll)."""
        return "".join(self._stdout_tail)

    @property
    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        return "".join(self._stderr)

    def error_message(self) -> str:
        """A one-line description of why the child failed."""
        if self.cancelled:
            return "cancelled"
        return readable_error(self.stderr, self.poll())

    def cancel(self, grace_s: float = 3.0) -> None:
        """End the child and everything it started: SIGTERM to the group, then SIGKILL."""
        self.cancelled = True
        if os.name == "nt":  # pragma: no cover - Windows: taskkill walks the tree, without a window
            args, options = kill_tree_command(self.pid)
            subprocess.run(args, capture_output=True, check=False, **options)
            self.popen.wait(timeout=grace_s)
            return
        # The group may outlive the child itself (orphaned grandchildren), so signal it even
        # when the child has already exited.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            if self._wait_group(grace_s):
                break
        self.popen.wait(timeout=grace_s)

    def _wait_group(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None and not _group_alive(self.pid):
                return True
            time.sleep(0.05)
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists but not ours
        return True
    return True


# Windows process-creation flags (numeric: the names exist in ``subprocess`` on Windows only).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
STARTF_USESHOWWINDOW = 0x00000001
SW_HIDE = 0


def popen_options(osName: str | None = None) -> dict:
    """``Popen`` keyword arguments for a child whose whole tree Cancel can end, with no window.

    POSIX: a new session (its process group is signalled on cancel). Windows: a new process group,
    no console window (``CREATE_NO_WINDOW``; PythonSlicer is a console program, so without it every
    run and every pip install would flash a console, which ``slicer.util.launchConsoleProcess``
    hides the same way), and a hidden main window.
    """
    if (osName or os.name) != "nt":
        return {"start_new_session": True}
    options: dict = {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    startupinfo_class = getattr(subprocess, "STARTUPINFO", None)
    if startupinfo_class is not None:  # pragma: no cover - Windows only
        info = startupinfo_class()
        info.dwFlags |= STARTF_USESHOWWINDOW
        info.wShowWindow = SW_HIDE
        options["startupinfo"] = info
    return options


def kill_tree_command(pid: int) -> tuple[list[str], dict]:
    """The Windows command ending ``pid`` and its children, and its ``subprocess.run`` options (no window)."""
    return ["taskkill", "/F", "/T", "/PID", str(int(pid))], {"creationflags": CREATE_NO_WINDOW}


class ProcessRunner:
    """Starts children in their own session so that cancel reaches their whole process tree."""

    def start(self, args: Sequence[str], env: dict | None = None, cwd: Path | None = None) -> RunningProcess:
        """Start ``args`` with text pipes; ``env`` entries are added to the current environment."""
        return RunningProcess(self.popen(args, env, cwd))

    def popen(
        self, args: Sequence[str], env: dict | None = None, cwd: Path | None = None, stdin: bool = False
    ) -> subprocess.Popen:
        """The started child of :meth:`start`, not yet wrapped; ``stdin=True``: a pipe to write to
        (a warm worker's jobs), else no input at all.
        """
        full_env = dict(os.environ)
        full_env.update(env or {})
        # Progress lines must arrive as they are printed, not when a buffer fills.
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        kwargs = popen_options()
        popen = subprocess.Popen(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=full_env,
            cwd=None if cwd is None else str(cwd),
            **kwargs,
        )
        return popen


def python_executable() -> str:
    """The Python to run the core with: PythonSlicer inside Slicer, else this interpreter.

    Inside Slicer ``sys.executable`` is the Slicer launcher itself; ``PythonSlicer`` next to it
    runs Python with Slicer's environment and site-packages.
    """
    exe = Path(sys.executable)
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        candidate = exe.with_name(name)
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def infer_command(
    inputPath: Path,
    outputDir: Path,
    device: str = "auto",
    modelDir: Path | None = None,
    python: str | None = None,
) -> list[str]:
    """The command line of ``lvp infer`` with stage messages on stdout."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    args = [python or python_executable(), "-m", "lvp", "infer", str(inputPath), "-o", str(outputDir)]
    args += ["--device", device, "--progress-json"]
    if modelDir:
        args += ["--model", str(modelDir)]
    return args


class ProcessFailed(RuntimeError):  # noqa: N818 - "failed" reads better than ProcessFailedError
    """A child process failed; the message is the readable one-line error."""
