"""Installing the core's third-party dependencies into Slicer's Python, on first use.

The core itself (``lvp``) is not installed: it ships inside the module folder (the module's
CMakeLists lists ``lvp/*.py`` as module scripts), so Slicer imports it without pip, and an
installed extension has no ``pyproject.toml`` to install from. Only the runtime dependencies are
installed, after the user confirms, never SimpleITK or numpy (Slicer ships its own builds, which
its C++ side is linked against; a pip upgrade would break the application). A constraints file
pins the installed SimpleITK and numpy so no other package can pull a different version in
either. Without a reachable package index the user gets the offline instructions.
"""

from __future__ import annotations

import re
import socket
from importlib import metadata
from pathlib import Path

# Runtime dependencies of the core inside Slicer: pyproject's list minus Slicer's own packages
# (SimpleITK, numpy) and what only training, export, study statistics or PostgreSQL need (onnx,
# scikit-learn, psycopg). matplotlib draws the report figure of every ``lvp infer`` run.
RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    "torch==2.13.0",
    "monai==1.6.1",
    "scipy==1.17.1",
    "pydicom==3.0.2",
    "onnxruntime==1.32.0",
    "PyYAML==6.0.4",
    "tqdm==4.70.1",
    "SQLAlchemy==2.1.9",
    "alembic==1.20.1",
    "matplotlib==3.11.2",
)
# Packages Slicer provides: never installed, upgraded or replaced by this module.
SLICER_OWNED: tuple[str, ...] = ("SimpleITK", "numpy")
CORE_PACKAGE = "lvp"
OFFLINE_MESSAGE = (
    "Cannot reach the Python package index ({host}). LumbarVNetPro needs {packages} installed "
    "once. Connect to the internet and try again, or install offline: download the wheels on a "
    "connected machine ('pip download'), copy them here and set PIP_FIND_LINKS and PIP_NO_INDEX=1 "
    "before starting Slicer."
)


class InstallError(RuntimeError):
    """Installing failed; the message says what to do."""


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string (``"torch==2.13.0" -> "torch"``)."""
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing_requirements(requirements: tuple[str, ...] | list[str] = RUNTIME_REQUIREMENTS) -> list[str]:
    """The requirements not installed at all (a different installed version is left alone)."""
    return [r for r in requirements if installed_version(requirement_name(r)) is None]


def filtered_requirements(requirements: list[str] | tuple[str, ...]) -> list[str]:
    """``requirements`` without the packages Slicer owns."""
    owned = {_normal(n) for n in SLICER_OWNED}
    return [r for r in requirements if _normal(requirement_name(r)) not in owned]


def constraints_text() -> str:
    """Pip constraints pinning the Slicer-owned packages at their installed versions."""
    lines = []
    for name in SLICER_OWNED:
        version = installed_version(name)
        if version:
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def pip_commands(requirements: list[str] | tuple[str, ...], constraintsFile: Path) -> list[list[str]]:
    """The pip argument lists to run (without the ``python -m pip`` prefix): one step, or none.

    Never a step for the core, and never SimpleITK or numpy.
    """
    deps = filtered_requirements(requirements)
    return [["install", "--constraint", str(constraintsFile), *deps]] if deps else []


def core_available() -> bool:
    """Whether the core package imports (it ships in the module folder; nothing to install)."""
    import importlib.util

    return importlib.util.find_spec(CORE_PACKAGE) is not None


def index_reachable(host: str = "pypi.org", port: int = 443, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the package index can be opened."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def check_online(packages: list[str], host: str = "pypi.org", port: int = 443) -> None:
    """Raise :class:`InstallError` with the offline instructions when the index is unreachable."""
    if not index_reachable(host, port):
        raise InstallError(OFFLINE_MESSAGE.format(host=host, packages=", ".join(packages) or "packages"))


def install(
    workDir: Path,
    runner,  # noqa: ANN001 - a process.ProcessRunner
    python: str,
    requirements: list[str] | tuple[str, ...] = RUNTIME_REQUIREMENTS,
    host: str = "pypi.org",
    port: int = 443,
) -> list[str]:
    """Install the missing runtime requirements with ``python -m pip``; returns what was installed.

    The caller asks the user for confirmation first. Nothing missing: nothing runs. Otherwise the
    index must be reachable (else :class:`InstallError` with the offline instructions); pip runs
    as a child process with the Slicer-owned packages pinned, and a failure raises
    :class:`InstallError` with pip's last line.
    """
    from .process import readable_error

    if not core_available():
        raise InstallError(
            "the LVP core ('lvp' package) is not beside the module; reinstall the LumbarVNetPro extension"
        )
    missing = filtered_requirements(missing_requirements(requirements))
    if not missing:
        return []
    check_online([requirement_name(r) for r in missing], host, port)
    workDir = Path(workDir)
    workDir.mkdir(parents=True, exist_ok=True)
    constraints = workDir / "slicer-constraints.txt"
    constraints.write_text(constraints_text())
    for step in pip_commands(missing, constraints):
        running = runner.start([python, "-m", "pip", *step, "--disable-pip-version-check"])
        code = running.wait()
        if code != 0:
            raise InstallError(f"pip install failed: {readable_error(running.stderr, code)}")
    return missing


def missing_names(requirements: list[str] | tuple[str, ...] = RUNTIME_REQUIREMENTS) -> list[str]:
    """Names of the missing runtime packages the panel asks to install (empty: nothing to ask)."""
    return [requirement_name(r) for r in filtered_requirements(missing_requirements(requirements))]


def install_into_slicer(runner, python: str | None = None, workDir: Path | None = None) -> list[str]:  # noqa: ANN001
    """:func:`install` into the Python that runs the core (PythonSlicer), working in a temporary folder."""
    import tempfile

    from .process import python_executable

    workDir = Path(workDir) if workDir else Path(tempfile.gettempdir()) / "lvp-install"
    return install(workDir, runner, python or python_executable())
