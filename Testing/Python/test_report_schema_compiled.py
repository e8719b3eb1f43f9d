"""The compiled report check (issue 13) gives jsonschema's verdict: on valid reports, on a real
pipeline report and on every single mutation of them; jsonschema is needed only to name errors.
"""

from __future__ import annotations

import copy
import json
import math
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest
from test_report_schema import _valid, _with_issue15_fields

from lvp.pipeline import MaskSegmenter, report_json_text, run_inference
from lvp.report.schema import (
    REPORT_SCHEMA,
    SchemaError,
    UnsupportedSchemaError,
    _report_check,
    compile_schema,
    schema_errors,
    validate_report,
)

# Values put in place of each node: every JSON type, the number rules' edge cases, bools for ints.
REPLACEMENTS = [None, True, False, 0, 1, -1, 2.0, 1.5, -0.5, 1e12, math.nan, math.inf, -math.inf, "", "x",
                "complete", "LPS", "lvp-report", [], [1.0, 2.0, 3.0], [[0, 0, 0]], {}, {"x": 1}, (1, 2, 3)]


def _paths(value, path=()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))


def _parent(report, path):
    node = report
    for part in path[:-1]:
        node = node[part]
    return node


def _mutations(report: dict, paths: list | None = None, replacements: list = REPLACEMENTS) -> Iterator[dict]:
    """Each single change: a node replaced, a key removed or added, a list shortened or grown."""
    for path in paths if paths is not None else _paths(report):
        if not path:
            continue
        for new in replacements:
            r = copy.deepcopy(report)
            _parent(r, path)[path[-1]] = copy.deepcopy(new)
            yield r
        r = copy.deepcopy(report)
        parent = _parent(r, path)
        if isinstance(parent, dict):
            del parent[path[-1]]
            yield r
        node = _parent(report, (*path, None))
        if isinstance(node, dict):
            r = copy.deepcopy(report)
            _parent(r, (*path, None))["unexpected_key"] = 1
            yield r
        if isinstance(node, list):
            for change in ("drop", "grow", "empty"):
                r = copy.deepcopy(report)
                lst = _parent(r, (*path, None))
                if change == "drop" and lst:
                    lst.pop()
                elif change == "grow":
                    lst.append(copy.deepcopy(lst[0]) if lst else 1)
                else:
                    lst.clear()
                yield r


@pytest.fixture(scope="module")
def pipeline_report(sample_case, tmp_path_factory) -> dict:
    """A real report.json from a pipeline run on the bundled sample (its reference mask as segmenter)."""
    out = tmp_path_factory.mktemp("run") / "out"
    run_inference(sample_case, out, segmenter=MaskSegmenter(sample_case.with_name("spider_sample_labels.nii.gz")))
    return json.loads((out / "report.json").read_text())


def _agree(report: dict) -> bool:
    check = _report_check()
    return check(report) == (not schema_errors(report, REPORT_SCHEMA))


def test_the_shipped_schema_compiles():
    assert _report_check() is not None


def test_valid_reports_pass_both(pipeline_report):
    check = _report_check()
    for report in (_valid(), _with_issue15_fields(_valid()), pipeline_report):
        assert check(report)
        assert not schema_errors(report, REPORT_SCHEMA)
        validate_report(report)


def test_every_single_mutation_gets_jsonschemas_verdict():
    base = _with_issue15_fields(_valid())
    n = refused = 0
    for mutated in _mutations(base):
        assert _agree(mutated), json.dumps(mutated, default=str)[:400]
        n += 1
        refused += not _report_check()(mutated)
    assert n > 1000 and refused > n // 2  # the mutations do exercise the refusals


def test_mutations_of_a_pipeline_report_get_jsonschemas_verdict(pipeline_report):
    # 25 paths of the real report drawn at random, a few changes each (jsonschema takes ~40 ms a
    # report of this size; the small report above gets every mutation).
    rng = random.Random(13)
    paths = rng.sample([p for p in _paths(pipeline_report) if p], 25)
    for mutated in _mutations(pipeline_report, paths, [None, -1, 1.5, math.nan, "x", [], {}]):
        assert _agree(mutated), json.dumps(mutated, default=str)[:400]


def test_refused_reports_still_name_their_violations():
    report = _valid()
    report["levels"][0]["disc_label"] = True
    report["timings_s"]["network"] = math.nan
    with pytest.raises(SchemaError) as info:
        validate_report(report)
    assert any("$.levels[0].disc_label" in e for e in info.value.errors)
    assert any("$.timings_s.network" in e for e in info.value.errors)


@pytest.mark.parametrize("schema", [{"pattern": "^a"}, {"type": "string", "format": "date"}, {"$ref": "#/x"},
                                    {"items": [{"type": "string"}]}, {"enum": [[1, 2]]}, {"type": "foo"}])
def test_keywords_the_compiler_does_not_know_are_refused(schema):
    with pytest.raises(UnsupportedSchemaError):
        compile_schema(schema)


def test_the_fast_path_does_not_import_jsonschema():
    code = ("import sys; sys.path[:0] = sys.argv[1:]\n"
            "from test_report_schema import _valid\n"
            "from lvp.report.schema import validate_report\n"
            "validate_report(_valid())\n"
            "assert 'jsonschema' not in sys.modules\n"
            "r = _valid(); r['status'] = 'done'\n"
            "try:\n    validate_report(r)\nexcept ValueError as e:\n    assert '$.status' in str(e)\n"
            "assert 'jsonschema' in sys.modules\n")
    here = [p for p in sys.path if p.endswith(("Testing/Python", "LumbarVNetPro"))]
    subprocess.run([sys.executable, "-c", code, *here], check=True)


def test_report_json_text_is_the_report_and_refuses_nan(pipeline_report):
    text = report_json_text(pipeline_report)
    assert json.loads(text) == pipeline_report
    assert list(json.loads(text)) == list(pipeline_report)  # key order kept
    assert text.count("\n") >= len(pipeline_report) + len(pipeline_report["levels"])  # a line per field and level
    with pytest.raises(ValueError):
        report_json_text({"x": [math.nan]})


def test_jsonable_gives_plain_json_types():
    import numpy as np

    from lvp.report.build import jsonable

    class Entry:
        def to_dict(self):
            return {"p": np.float32(1.5), "q": (np.int64(3), float("nan"))}

    value = {"a": [1, 2.5, math.inf, -0.0, np.float64(2.0), np.float32("nan"), np.int16(3), np.bool_(True), True,
                   None, "s", (1, 2)],
             3: np.arange(4).reshape(2, 2), "d": Entry(), "l": [[], {}], "n": [{"k": [math.nan, -math.inf]}]}
    out = jsonable(value)
    assert out == {"a": [1, 2.5, None, -0.0, 2.0, None, 3, True, True, None, "s", [1, 2]], "3": [[0, 1], [2, 3]],
                   "d": {"p": 1.5, "q": [3, None]}, "l": [[], {}], "n": [{"k": [None, None]}]}
    kinds = {type(v) for v in out["a"]}
    assert kinds <= {int, float, bool, str, list, type(None)}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
