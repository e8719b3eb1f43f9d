"""Start-up and exit of a one-case ``lvp infer`` process: imports, the background import thread, exit.

Speed itself is printed by benchmarks/bench_infer.py; these tests pin the mechanisms: the command
line imports only the command it runs, a case imports no module it does not use (PyYAML,
DICOMweb, the other commands), the modules a case needs after the network are imported in a
thread that is always joined and whose failures never break a case, and ``python -m lvp infer``
ends without the interpreter's teardown but after everything ``sys.exit`` does that matters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pytest

from lvp.cli import FAST_EXIT_COMMANDS, build_parser, command_word, main
from lvp.commands.infer import CASE_MODULES, start_preload

ALL_COMMANDS = {"check", "demo", "evaluate", "export", "infer", "serve", "study", "train", "validate"}


def _python(code: str, timeout: int = 180) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object on its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv, word", [
    (["infer", "a.nii.gz", "-o", "out"], "infer"),
    (["-v", "infer", "a.nii.gz"], "infer"),
    (["--help", "infer"], None),  # lvp's own help lists every command
    (["-h"], None),
    ([], None),
    (["--", "infer"], None),
    (["study", "--db", "x", "create", "s"], "study"),
])
def test_command_word_is_the_first_word_not_an_option(argv, word):
    assert command_word(argv) == word


def test_parser_for_one_command_registers_only_it_else_every_command():
    one = build_parser("infer")
    sub = one._subparsers._group_actions[0]
    assert set(sub.choices) == {"infer"}
    args = one.parse_args(["infer", "x.nii.gz", "-o", "out", "--no-html"])
    assert args.command == "infer" and args.no_html and args.inputs == ["x.nii.gz"]
    for word in (None, "bogus", "study_db"):  # no command, an unknown one, a module registering other names
        full = build_parser(word)
        assert ALL_COMMANDS <= set(full._subparsers._group_actions[0].choices), word


def test_unknown_command_still_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["bogus"])
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    for name in ALL_COMMANDS:
        assert f"'{name}'" in err


def test_help_before_the_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help", "infer"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for name in ("infer", "study", "train", "serve"):
        assert name in out


def test_parsing_an_infer_command_line_imports_no_heavy_module():
    """What runs before a case (parse, expand inputs' names) imports no image, network or schema library."""
    found = _python("""
        import json, sys
        from lvp.cli import build_parser
        build_parser("infer").parse_args(["infer", "x.nii.gz", "-o", "out"])
        heavy = ("scipy", "SimpleITK", "numpy", "onnxruntime", "jsonschema", "yaml", "torch")
        print(json.dumps({"heavy": [m for m in heavy if m in sys.modules],
                          "commands": sorted(m for m in sys.modules if m.startswith("lvp.commands."))}))
    """)
    assert found["heavy"] == []
    assert found["commands"] == ["lvp.commands.infer"]


def test_grading_imports_yaml_only_to_read_a_rules_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("displaced_mm: 1.5\n")
    found = _python(f"""
        import json, sys
        from lvp.grading import GradingRules
        GradingRules()
        before = "yaml" in sys.modules
        r = GradingRules.from_yaml({str(rules)!r})
        print(json.dumps({{"before": before, "after": "yaml" in sys.modules, "displaced_mm": r.displaced_mm}}))
    """)
    assert found == {"before": False, "after": True, "displaced_mm": 1.5}


def test_every_preloaded_module_exists():
    """A renamed module would silently stop being preloaded: each name must import."""
    import importlib

    for name in CASE_MODULES:
        assert importlib.import_module(name).__name__ == name


def test_preload_swallows_import_errors_and_skips_what_is_imported():
    failures: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda hook_args: failures.append(hook_args.exc_value)
    try:
        thread = start_preload(("json", "lvp_no_such_module", "lvp.no_such_module"))
        assert thread is not None and thread.name == "lvp-preload" and not thread.daemon
        thread.join(30)
    finally:
        threading.excepthook = previous
    assert not thread.is_alive() and failures == []
    assert "lvp_no_such_module" not in sys.modules
    assert start_preload(("json", "os")) is None  # already imported: no thread


def test_fresh_one_case_process_preloads_joins_and_imports_only_what_it_uses(tmp_path, sample_case):
    """A one-case run in a fresh process: complete, the preload thread joined, no unused module imported."""
    found = _python(f"""
        import json, sys, threading
        first_import = {{}}  # module -> the thread that started importing it

        def audit(event, args):
            if event == "import":
                first_import.setdefault(args[0], threading.current_thread().name)

        sys.addaudithook(audit)
        from lvp.cli import main
        code = main(["infer", {str(sample_case)!r}, "-o", {str(tmp_path / "out")!r}, "--device", "cpu", "-q"])
        print(json.dumps({{"code": code, "html_imported_by": first_import.get("lvp.report.html"),
                          "threads": [t.name for t in threading.enumerate() if t is not threading.main_thread()],
                          "unused": [m for m in ("yaml", "lvp.io.dicomweb", "lvp.commands.study", "torch")
                                     if m in sys.modules],
                          "preloaded": [m for m in {CASE_MODULES!r} if m in sys.modules]}}))
    """)
    assert found["code"] == 0
    # The report page is the last module the case needs: the thread has imported it long before.
    assert found["html_imported_by"] == "lvp-preload"
    assert "lvp-preload" not in found["threads"]
    assert found["unused"] == []
    assert found["preloaded"] == list(CASE_MODULES)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "complete"


def test_case_failing_early_still_joins_the_preload(tmp_path):
    """An input refused before the network: exit 2, and the process ends (the thread was joined)."""
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    found = _python(f"""
        import json, threading
        from lvp.cli import main
        code = main(["infer", {str(bad)!r}, "-o", {str(tmp_path / "out")!r}, "--device", "cpu", "-q"])
        print(json.dumps({{"code": code, "threads": [t.name for t in threading.enumerate()
                                                     if t is not threading.main_thread()]}}))
    """)
    assert found == {"code": 2, "threads": []}
    assert not (tmp_path / "out").exists()


def test_exit_now_joins_threads_runs_atexit_flushes_and_keeps_the_code(tmp_path):
    """exit_now ends the process only after non-daemon threads, atexit handlers and the output buffers."""
    marker_thread, marker_atexit = tmp_path / "thread", tmp_path / "atexit"
    code = textwrap.dedent(f"""
        import atexit, pathlib, sys, threading, time
        from lvp.cli import exit_now

        def late():
            time.sleep(0.3)
            pathlib.Path({str(marker_thread)!r}).write_text("joined")

        threading.Thread(target=late).start()
        atexit.register(lambda: pathlib.Path({str(marker_atexit)!r}).write_text("ran"))
        sys.stdout.write("no newline, still buffered")
        sys.stderr.write("error text")
        exit_now(3)
        print("never")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stdout == "no newline, still buffered"
    assert proc.stderr == "error text"
    assert marker_thread.read_text() == "joined"
    assert marker_atexit.read_text() == "ran"


def test_python_m_lvp_infer_exits_fast_with_every_line_and_file(tmp_path, sample_case):
    """The Slicer module's way: progress lines, the summary on stderr and the result all arrive."""
    assert "infer" in FAST_EXIT_COMMANDS
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lvp", "infer", str(sample_case), "-o", str(out), "--device", "cpu",
                           "--progress-json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1] == {"event": "done", "complete": 1, "partial": 0,
                                                            "failed": 0, "exit_code": 0}
    assert f"-> {out}" in proc.stderr and "numbering:" in proc.stderr
    assert json.loads((out / "report.json").read_text())["status"] == "complete"
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "lvp", "infer", str(bad), "-o", str(tmp_path / "bad_out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "lvp infer: error:" in proc.stderr


def test_a_case_registers_no_exit_handler_but_loggings(tmp_path, sample_case):
    """What exit_now skips is teardown only: a fresh infer process registers no atexit work but
    logging.shutdown (which exit_now runs anyway), and no finalizer or non-daemon thread is left."""
    found = _python(f"""
        import atexit, json, threading, weakref
        registered = []
        register = atexit.register

        def record(func, *args, **kwargs):
            registered.append(f"{{func.__module__}}.{{func.__qualname__}}")
            return register(func, *args, **kwargs)

        atexit.register = record
        from lvp.cli import main
        code = main(["infer", {str(sample_case)!r}, "-o", {str(tmp_path / "out")!r}, "--device", "cpu", "-q"])
        print(json.dumps({{"code": code, "registered": registered, "finalizers": len(weakref.finalize._registry),
                          "threads": [t.name for t in threading.enumerate() if not t.daemon
                                      and t is not threading.main_thread()]}}))
    """)
    assert found["code"] == 0
    assert set(found["registered"]) <= {"logging.shutdown"}
    assert found["finalizers"] == 0 and found["threads"] == []


def test_under_a_profiler_python_m_lvp_infer_exits_normally_so_the_profile_is_written(tmp_path, sample_case):
    """``python -m cProfile -o F -m lvp infer`` writes F after the module returns: the fast exit
    would end the process first and lose the profile (docs/performance.md is made that way)."""
    profile = tmp_path / "infer.prof"
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "lvp", "infer",
                           str(sample_case), "-o", str(tmp_path / "out"), "--device", "cpu", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pstats

    stats = pstats.Stats(str(profile))
    assert any(name == "run_inference" for (_file, _line, name) in stats.stats)
