"""Every segment code in lvp.labels.SEGMENT_CODES is the one DICOM PS3.16 publishes.

The reference is pydicom's copy of PS3.16 (its ``_concepts_dict`` is generated from the
standard's part 16: each SNOMED CT / DCM concept with its code meaning and the context groups that
list it). Each structure's type must be listed, with the same meaning, in the context group the
table names (CID 7603 Vertebra, 7604 Intervertebral Disc, 7151 Segmentation Property Type, 8134
Anatomic Structures); the category in CID 7150. Published values of the codes issue 14 found wrong
are also spelled out, so a wrong dictionary could not hide a wrong table.
"""

from __future__ import annotations

import pytest
from pydicom.sr import _concepts_dict

from lvp.io.seg_nrrd import parse_terminology_entry, segment_fields
from lvp.labels import CATEGORY, DISC_LABELS, SEGMENT_CODES, STRUCTURES, VERTEBRA_LABELS

SCHEMES = {"SCT": "SCT", "DCM": "DCM"}


def _published(scheme: str, code: str) -> list[tuple[str, list[int]]]:
    """(meaning, context groups) of every PS3.16 entry of ``code``."""
    out = []
    for entry in _concepts_dict.concepts[SCHEMES[scheme]].values():
        if code in entry:
            out.append(entry[code])
    return out


@pytest.mark.parametrize("name", sorted(SEGMENT_CODES))
def test_type_code_is_published_with_its_meaning_in_its_context_group(name):
    codes = SEGMENT_CODES[name]
    published = _published(codes.type.scheme, codes.type.code)
    assert published, f"{name}: {codes.type} is not a PS3.16 concept"
    meanings = {m.removesuffix(" (body structure)") for m, _ in published}
    assert codes.type.meaning in meanings, (name, meanings)
    if codes.context_group:
        cid = int(codes.context_group.removeprefix("CID "))
        assert any(cid in cids for _, cids in published), (name, codes.context_group, published)
    else:  # no DICOM context group has the structure: the table must say so, and no CID lists it
        assert all(not cids for _, cids in published)
    # Vertebrae and discs in CID 7603/7604 are segmentation property types (CID 7151) as well.
    if codes.context_group in ("CID 7603", "CID 7604"):
        assert any(7151 in cids for _, cids in published)
    assert codes.modifier is None  # no laterality: none of these structures is paired


def test_category_is_cid_7150_anatomical_structure():
    published = _published("SCT", CATEGORY.code)
    assert any(7150 in cids and m == "Anatomical Structure" for m, cids in published)
    assert {c.category for c in SEGMENT_CODES.values()} == {CATEGORY}


def test_the_codes_issue_14_found_wrong():
    # DICOM PS3.16 CID 7603: L2 vertebra is 14293000 and L3 vertebra 36470004; 68310008 is no
    # PS3.16 concept and 69536005 is "Head".
    assert SEGMENT_CODES["L2"].type.code == "14293000"
    assert SEGMENT_CODES["L3"].type.code == "36470004"
    assert not _published("SCT", "68310008")
    assert any(m == "Head" for m, _ in _published("SCT", "69536005"))


def test_every_output_structure_has_distinct_codes_from_the_table():
    names = set(VERTEBRA_LABELS) | set(DISC_LABELS) | {"sacrum", "canal"}
    assert names == set(SEGMENT_CODES)
    types = [st.codes.type.code for st in STRUCTURES.values()]
    assert len(set(types)) == len(types)  # no two structures share a code


def test_seg_nrrd_writes_the_table(tmp_path):
    import numpy as np

    values = np.array(sorted(STRUCTURES), dtype=np.uint8)
    labels = values.reshape(1, 1, -1)
    for seg in segment_fields(labels):
        codes = STRUCTURES[seg["label_value"]].codes
        term = parse_terminology_entry(seg["terminology"])
        assert term["category"]["code"] == codes.category.code
        assert (term["type"]["code"], term["type"]["meaning"]) == (codes.type.code, codes.type.meaning)
        assert term["type_modifier"] is None
