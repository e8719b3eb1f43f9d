"""The node attributes the module marks a case's MRML nodes with: one definition for the scene and
the evidence markups (so removing a case or re-running a volume removes every node it made).
"""

from __future__ import annotations

# Node attribute marking every node this module made for a case (removed on case change), and
# the node's role in it ("image", "evidence", ...).
CASE_ATTRIBUTE = "LVP.Case"
ROLE_ATTRIBUTE = "LVP.Role"
# The ID of the input volume an analysis result belongs to (a re-run replaces that volume's result).
VOLUME_ATTRIBUTE = "LVP.InputVolume"


def mark_case_node(node, caseKey: str, role: str, volumeId: str = "") -> None:  # an MRML node
    """Mark ``node`` as made for case ``caseKey`` in ``role`` (and, given, for the input volume ``volumeId``)."""
    node.SetAttribute(CASE_ATTRIBUTE, caseKey)
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    if volumeId:
        node.SetAttribute(VOLUME_ATTRIBUTE, volumeId)
