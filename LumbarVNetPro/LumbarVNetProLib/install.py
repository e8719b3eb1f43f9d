"""Installing the core's third-party dependencies into Slicer's Python, on first use.

The core itself (``lvp``) is not installed: it ships inside the module folder, so Slicer imports
it without pip. Only runtime dependencies are installed, after the user confirms, and only the
ones a step needs (:data:`ANALYSIS_REQUIREMENTS` for *Run analysis*, :data:`READING_REQUIREMENTS`
for *Sign in*), never SimpleITK or numpy: Slicer ships its own builds, which its C++ side is
linked against. A constraints file pins them so no other package can pull a different version.

Like ``slicer.packaging.pip_ensure``: the missing requirements are checked against the installed
versions, the user is asked (the panel), pip runs as a child process while the application stays
responsive, with its output as progress and a Cancel that ends pip's whole process tree.

What is deliberately not done:

* **no reachability probe**: pip decides whether it can reach an index, through the user's
  proxy settings, ``pip.conf`` and ``PIP_*`` variables. A failing pip's own last line is shown;
* **no torch**: CPU inference needs only ONNX Runtime. GPU inference needs torch, which the
  *PyTorch* Slicer extension (``PyTorchUtils``) installs in the build that fits the machine's
  CUDA driver (:func:`torch_status`); a plain index install picks a CPU-only build on Windows
  and a multi-GB CUDA build on Linux;
* **no monai / matplotlib**: the inference child uses neither.

The versions installed are the ones CI tests: the repository's ``constraints.txt`` (one file,
also read by the Makefile and ``.ci/run``; the CMake build ships it in the module folder) is
passed to pip as constraints, minus the packages Slicer owns (pinned at Slicer's own versions)
and minus packages already installed (another extension's copy is left as it is).

Offline installation: put the wheels in a folder (``pip download -r constraints.txt -d DIR`` on a
connected machine of the same platform and Python, with the requirement names the panel lists)
and set ``LVP_WHEELS=DIR`` before starting Slicer: pip then runs with ``--no-index --find-links
DIR``. ``LVP_PIP_CONSTRAINTS=FILE`` adds a site's own version pins (only requirement lines are
taken from it, never pip options).

Every install works in a private temporary folder made by :func:`tempfile.mkdtemp` (mode 0700,
unpredictable name), and the constraints file is created there exclusively, never following a
link: a file planted in a shared temporary folder cannot be overwritten nor slip options to pip.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# What the inference child (`lvp infer` on a NIfTI the panel writes) imports: ONNX Runtime for the
# network on the CPU, SciPy for labelling/measurement, PyYAML for the grading rules, tqdm for its
# progress, Jinja2 for report.html, jsonschema to name what is wrong in a refused report.json,
# threadpoolctl to hold numpy's BLAS to one thread during labelling. pydicom is
# imported only for DICOM input, which the panel never hands the child.
# Minimum versions, not pins: Slicer's Python is shared with other extensions, so a compatible
# version already there is used as it is; what is missing is installed at the tested version of
# constraints.txt (test_dependencies checks that those pins satisfy these ranges).
ANALYSIS_REQUIREMENTS: tuple[str, ...] = (
    "onnxruntime>=1.17",
    "scipy>=1.11",
    "PyYAML>=6.0",
    "tqdm>=4.60",
    "Jinja2>=3.1",
    "jsonschema>=4.18",
    "threadpoolctl>=3.1",
)
# What the reading database needs (Sign in).
READING_REQUIREMENTS: tuple[str, ...] = ("SQLAlchemy>=2.0", "alembic>=1.12")
# Added for a postgresql:// reading database only.
POSTGRES_REQUIREMENTS: tuple[str, ...] = ("psycopg[binary]>=3.1",)
# Import names of the distributions whose import name differs.
IMPORT_NAMES = {"pyyaml": "yaml", "sqlalchemy": "sqlalchemy", "psycopg": "psycopg", "onnxruntime": "onnxruntime"}
RUNTIME_REQUIREMENTS: tuple[str, ...] = ANALYSIS_REQUIREMENTS + READING_REQUIREMENTS
# Packages Slicer provides: never installed, upgraded or replaced by this module.
SLICER_OWNED: tuple[str, ...] = ("SimpleITK", "numpy")
CORE_PACKAGE = "lvp"
WHEELS_ENV = "LVP_WHEELS"
CONSTRAINTS_ENV = "LVP_PIP_CONSTRAINTS"
# The tested pins: installed beside LumbarVNetProLib/ by the CMake build, one level up in the source tree.
CONSTRAINTS_NAME = "constraints.txt"
MODULE_FOLDER = Path(__file__).resolve().parents[1]
# A pinned version as it may appear in a constraints line (no options, no URLs, no markers).
_VERSION = re.compile(r"^[A-Za-z0-9_.+!-]+$")


class InstallError(RuntimeError):
    """Installing failed; the message says what to do."""


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string (``"psycopg[binary]==3.3.9" -> "psycopg"``)."""
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def satisfied(requirement: str) -> bool:
    """Whether ``requirement`` is installed at a version its specifier allows (``pip_check``'s rule).

    A requirement whose marker does not apply here counts as satisfied. A *different* installed
    version is not satisfied: the panel then offers the pinned one.
    """
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return True
    version = installed_version(req.name)
    return version is not None and (not req.specifier or req.specifier.contains(version, prereleases=True))


def missing_requirements(requirements: tuple[str, ...] | list[str] = RUNTIME_REQUIREMENTS) -> list[str]:
    """The requirements not satisfied, without the packages Slicer owns."""
    return [r for r in filtered_requirements(requirements) if not satisfied(r)]


def filtered_requirements(requirements: list[str] | tuple[str, ...]) -> list[str]:
    """``requirements`` without the packages Slicer owns."""
    return [r for r in requirements if not slicer_owns(requirement_name(r))]


def slicer_owns(name: str) -> bool:
    """Whether the distribution ``name`` is one Slicer ships and links against (:data:`SLICER_OWNED`)."""
    return canonicalize_name(name) in {canonicalize_name(n) for n in SLICER_OWNED}


def missing_names(requirements: list[str] | tuple[str, ...] = RUNTIME_REQUIREMENTS) -> list[str]:
    """Names of the missing runtime packages the panel asks to install (empty: nothing to ask)."""
    return [requirement_name(r) for r in missing_requirements(requirements)]


def reading_requirements(databaseUrl: str = "") -> tuple[str, ...]:
    """What signing in to ``databaseUrl`` needs (a PostgreSQL URL adds its driver)."""
    postgres = str(databaseUrl).lower().startswith("postgresql")
    return READING_REQUIREMENTS + (POSTGRES_REQUIREMENTS if postgres else ())


def constraint_lines(text: str) -> list[str]:
    """The requirement lines of a constraints text: comments, blank lines and pip options dropped.

    A constraints file may carry ``--index-url``/``-f`` lines that pip obeys; the installer never
    passes such a line on, wherever the text came from.
    """
    lines = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            Requirement(line)
        except InvalidRequirement:
            continue
        lines.append(line)
    return lines


def shipped_constraints() -> Path | None:
    """The tested pins shipped with the module (``constraints.txt``), or None in a build without it."""
    for folder in (MODULE_FOLDER, MODULE_FOLDER.parent):
        path = folder / CONSTRAINTS_NAME
        if path.is_file():
            return path
    return None


def tested_pins(path: Path | None = None) -> list[str]:
    """The shipped pins pip may apply here: none for Slicer's packages nor for installed ones."""
    path = path if path is not None else shipped_constraints()
    if path is None:
        return []
    pins = []
    for line in constraint_lines(path.read_text(errors="replace")):
        name = canonicalize_name(Requirement(line).name)
        if not slicer_owns(name) and installed_version(name) is None:
            pins.append(line)
    return pins


def constraints_text(extra: Path | str | None = None, shipped: Path | None = None) -> str:
    """Pins of the Slicer-owned packages at their installed versions, the tested pins of what is
    not installed yet (:func:`tested_pins`), plus a site's own pins (``$LVP_PIP_CONSTRAINTS``).
    """
    lines = []
    for name in SLICER_OWNED:
        version = installed_version(name)
        if version and _VERSION.match(version):
            lines.append(f"{name}=={version}")
    lines += tested_pins(shipped)
    extra = extra if extra is not None else os.environ.get(CONSTRAINTS_ENV)
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise InstallError(f"{CONSTRAINTS_ENV} names {path}, which is not a file")
        lines += constraint_lines(path.read_text(errors="replace"))
    return "\n".join(lines) + "\n"


def private_workdir() -> Path:
    """A new private folder (``mkdtemp``: mode 0700, a name no other user can predict)."""
    return Path(tempfile.mkdtemp(prefix="lvp-install-"))


def write_private(path: Path, text: str) -> Path:
    """Create ``path`` exclusively (never through an existing file or link) and write ``text``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def wheel_folder() -> Path | None:
    """The offline wheel folder of ``$LVP_WHEELS``, or None (pip uses its configured index)."""
    value = os.environ.get(WHEELS_ENV, "").strip()
    if not value:
        return None
    folder = Path(value)
    if not folder.is_dir():
        raise InstallError(f"{WHEELS_ENV} names {folder}, which is not a folder of wheels")
    return folder


def pip_arguments(
    requirements: list[str] | tuple[str, ...],
    constraintsFile: Path,
    wheels: Path | None = None,
    dryRun: bool = False,
) -> list[str]:
    """The ``python -m pip`` arguments: install the requirements under the constraints.

    Never the core, never SimpleITK or numpy, never ``--no-deps``. With ``wheels`` pip reads
    only that folder (``--no-index --find-links``).
    """
    deps = filtered_requirements(requirements)
    if not deps:
        return []
    args = ["install", "--disable-pip-version-check", "--progress-bar", "off", *deps, "-c", str(constraintsFile)]
    if wheels is not None:
        args += ["--no-index", "--find-links", str(wheels)]
    if dryRun:
        args.append("--dry-run")
    return args


def core_available() -> bool:
    """Whether the core package imports (it ships in the module folder; nothing to install)."""
    import importlib.util

    return importlib.util.find_spec(CORE_PACKAGE) is not None


def start_install(
    runner,  # a process.ProcessRunner
    requirements: list[str] | tuple[str, ...],
    python: str | None = None,
    wheels: Path | None = None,
    dryRun: bool = False,
):  # (RunningProcess or None, list of what is installed, work folder)
    """Start pip for the missing ``requirements``; returns ``(running, missing, workDir)`` at once.

    ``running`` is None when nothing is missing (nothing runs). The caller polls ``running``
    (its stdout lines are pip's progress), may cancel it, and checks the exit code.
    """
    from .process import python_executable

    if not core_available():
        raise InstallError(
            "the LVP core ('lvp' package) is not beside the module; reinstall the LumbarVNetPro extension"
        )
    missing = missing_requirements(requirements)
    if not missing:
        return None, [], None
    wheels = wheels if wheels is not None else wheel_folder()
    workDir = private_workdir()
    constraints = write_private(workDir / "slicer-constraints.txt", constraints_text())
    args = pip_arguments(missing, constraints, wheels, dryRun)
    # pip's log goes to stdout line by line (the panel's progress); stderr holds its error.
    try:
        running = runner.start([python or python_executable(), "-m", "pip", *args], cwd=workDir)
    except BaseException:
        remove_workdir(workDir)
        raise
    return running, missing, workDir


def remove_workdir(workDir: Path | None) -> None:
    """Remove the private folder of an install job once pip has ended (whatever the outcome)."""
    if workDir is not None:
        shutil.rmtree(workDir, ignore_errors=True)


def install(
    runner,  # a process.ProcessRunner
    python: str | None = None,
    requirements: list[str] | tuple[str, ...] = RUNTIME_REQUIREMENTS,
    wheels: Path | None = None,
    dryRun: bool = False,
) -> list[str]:
    """Blocking :func:`start_install` (scripts, tests); returns what was installed.

    :class:`InstallError` with pip's last line when pip fails.
    """
    from .process import readable_error

    running, missing, work = start_install(runner, requirements, python, wheels, dryRun)
    if running is None:
        return []
    try:
        code = running.wait()
        if code != 0:
            raise InstallError(f"pip install failed: {readable_error(running.stderr, code)}")
        return missing
    finally:
        remove_workdir(work)


def imported_before(names: list[str] | tuple[str, ...]) -> list[str]:
    """The installed distributions whose module was already imported in this process.

    Python keeps the version it imported first; those need a restart (``pip_ensure``'s rule).
    """
    import sys

    stale = []
    for name in names:
        module = IMPORT_NAMES.get(canonicalize_name(name), canonicalize_name(name).replace("-", "_"))
        if module in sys.modules:
            stale.append(name)
    return stale


def pip_stage(line: str) -> str | None:
    """A short progress text from one line of pip's output, or None for noise."""
    line = line.strip()
    for prefix in ("Collecting", "Downloading", "Processing", "Installing collected packages", "Successfully installed",
                   "Would install", "Looking in links"):
        if line.startswith(prefix):
            return line if len(line) <= 120 else line[:117] + "…"
    return None


def torch_status() -> str:
    """``"available"``, ``"extension"`` (the PyTorch extension can install it) or ``"missing"``.

    GPU inference needs torch; it is never pip-installed by this module (see the module docstring).
    """
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return "available"
    if importlib.util.find_spec("PyTorchUtils") is not None:
        return "extension"
    return "missing"


TORCH_MISSING = (
    "GPU inference needs PyTorch. Install the 'PyTorch' extension from the Extensions Manager, restart "
    "Slicer, and choose the GPU again (it installs the torch build that fits this computer), or run on the CPU, "
    "which needs no PyTorch."
)
