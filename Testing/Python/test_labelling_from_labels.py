"""Levels taken as named from a TotalSpineSeg label map (``lvp infer --labels``), on phantoms."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from phantom_helpers import labelled

from lvp.errors import ConfigError, InputError
from lvp.labelling.from_labels import labelling_from_labels, unchanged_confidences


def test_same_levels_planes_and_centres_as_the_automatic_labelling():
    ph, vol, lab, lev = labelled()
    given = labelling_from_labels(lab.labels, vol)
    assert [v.name for v in given.vertebrae] == [v.name for v in lab.vertebrae]
    assert [d.name for d in given.discs] == [d.name for d in lab.discs]
    for a, b in zip(given.discs, lab.discs):
        assert np.linalg.norm(a.plane.center_lps - b.plane.center_lps) < 0.5
        assert abs(float(a.plane.normal_lps @ b.plane.normal_lps)) > 0.99
        assert a.confidence == 1.0
    np.testing.assert_array_equal(given.labels, lab.labels)
    assert not given.warnings


def test_a_renamed_level_is_kept_not_recounted():
    ph, vol, lab, lev = labelled()
    labels = lab.labels.copy()
    labels[labels == 100] = 96  # the reader calls the lowest disc L5-L6
    given = labelling_from_labels(labels, vol, confidence={92: 0.7})
    assert "L5-L6" in [d.name for d in given.discs] and "L5-S" not in [d.name for d in given.discs]
    assert given.disc("L1-L2").confidence == 0.7 and given.disc("L5-L6").confidence == 1.0


def test_order_problems_warn_but_never_rename():
    ph, vol, lab, lev = labelled()
    labels = lab.labels.copy()
    l3, l4 = labels == 43, labels == 44
    labels[l3], labels[l4] = 44, 43  # swapped by mistake
    given = labelling_from_labels(labels, vol)
    assert "level_order" in [w["code"] for w in given.warnings]
    assert given.vertebra("L3").label == 43
    labels[labels == 43] = 0  # a gap
    assert "level_gap" in [w["code"] for w in labelling_from_labels(labels, vol).warnings]


def test_unknown_values_and_wrong_grid_are_refused():
    ph, vol, lab, lev = labelled()
    labels = lab.labels.copy()
    labels[0, 0, 0] = 7
    with pytest.raises(InputError, match=r"not LVP/TotalSpineSeg labels: \[7\]"):
        labelling_from_labels(labels, vol)
    with pytest.raises(InputError, match="shape"):
        labelling_from_labels(lab.labels[1:], vol)


def test_unchanged_confidences_keep_only_identical_levels():
    ph, vol, lab, lev = labelled()
    edited = lab.labels.copy()
    edited[edited == 94] = 0
    kept = unchanged_confidences(edited, lab.labels, {92: 0.8, 94: 0.8, 2: None})
    assert kept == {92: 0.8}


def test_cli_option_conflicts(tmp_path):
    from lvp.commands import infer

    parser = argparse.ArgumentParser()
    infer.register(parser.add_subparsers())
    base = ["infer", str(tmp_path / "a.nii.gz"), "-o", str(tmp_path / "o")]
    with pytest.raises(ConfigError, match="not both"):
        infer.run(parser.parse_args(base + ["--labels", "x", "--semantic", "y"]))
    with pytest.raises(ConfigError, match="--previous goes with --labels"):
        infer.run(parser.parse_args(base + ["--previous", "d"]))
