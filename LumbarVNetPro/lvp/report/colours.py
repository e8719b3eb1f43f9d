"""The colours of the report's evidence kinds: one table for the HTML figure and the Slicer markups.

Dependency-free on purpose: the Slicer module imports it before the core's optional packages are
installed.
"""

from __future__ import annotations

# Evidence colours by kind (SVG strokes on the report's figure; markups colours in Slicer).
EVIDENCE_COLOURS: dict[str, str] = {"caliper": "#ffeb3b", "vector": "#ff5252", "region": "#40c4ff",
                                    "coverage": "#ffffff", "plane": "#b388ff"}


def rgb(colour: str) -> tuple[float, float, float]:
    """A ``#rrggbb`` colour as RGB 0-1 (``"#ff5252" -> (1.0, 0.32, 0.32)``, to 8 bits)."""
    text = colour.removeprefix("#")
    if len(text) != 6:
        raise ValueError(f"colour {colour!r} is not #rrggbb")
    r, g, b = (int(text[i: i + 2], 16) / 255.0 for i in (0, 2, 4))
    return r, g, b
