"""Level labelling: vertebra and disc instances from a semantic segmentation, named by level.

Method (works on the canonical grid, cropped to the spine):

1. Disc instances are the connected components of the disc class on a grid pooled to ~1 mm
   in-plane. Only components in front of the canal's centre line count (the network's "disc" in
   fat, bowel or muscle does not); small fragments join the nearest large disc when close, two
   components at one level merge, a small one squeezed inside a vertebra and a stray one far
   beyond either end of the disc chain (no bone in between) are dropped
   (``disc_fragments_ignored``). Each disc gets a mid-plane (:func:`lvp.planes.fit_disc_plane`).
   A gap between discs about twice the neighbouring spacings and filled with bone is a disc the
   network missed: an interpolated separator splits the bone into two vertebrae
   (``missing_disc``). Bone far from the canal's centre line is not labelled. A small disc piece
   centred more than 15 mm to the side of the canal line is a fragment, not a level.
2. Vertebra voxels are split into the intervals between consecutive disc planes (the discs are
   the separators along the spine axis, so posterior elements that touch the neighbour's body do
   not merge two vertebrae); inside an interval, large connected components that lie one above
   the other are separate vertebrae (a disc the network missed, or a body-only layout). A
   candidate whose bone lies to one side of the canal line (mean LR offset over 15 mm, or less
   than a small vertebra's volume within 15 mm of the line: sacral ala, ilium) is not counted
   (``lateral_bone_ignored``).
3. The sacrum: with a network sacrum class (4), its largest component centred on the spine (within
   20 mm of the canal line in LR; pieces elsewhere are ignored), below the lowest disc; it needs
   no length (the class covers about one vertebra); vertebra-class bone below the lowest disc
   whose centre is lower than the sacrum's is pelvic bone beside it, not a vertebra;
   L5-S is the disc directly above it, and discs with sacrum above them (S1-S2 remnants) are
   never lumbar (their voxels are written as sacrum, ``sacral_disc``). A lowest disc much
   smaller than the others (below 0.2 of their median volume) is taken as a remnant with S1
   segmented as a vertebra; S1 then joins the sacrum. Without the class, the sacrum is the bone
   below the lowest disc when there is image below it (yet no further disc), or, when the field
   of view cuts it, when it is long along the spine (at least 1.4 times the median vertebra);
   levels are counted from the sacrum upwards (L5, L4, ...). Without a sacrum the lowest disc
   (or vertebra) is *assumed* to be L5-S (L5), with lower confidence; the numbering check says
   so (step 5).
4. Check from the cranial end: thoracic bodies are smaller in anteroposterior depth than lumbar
   ones. When the field of view reaches above the level counted as L1, the depth profile is
   checked; six lumbar-like vertebrae or only four (a sacralised L5 or lumbarised S1) raise a
   ``transitional_anatomy`` warning. The numbering is never changed silently: with six
   lumbar-like vertebrae the count from the sacrum is kept (the extra one is labelled T12) and
   the warning says so. A rudimentary lumbosacral disc also raises the warning. Only a clear
   step in depth between neighbours counts (SPIDER's T11, T12 and L1 all lie at 0.8-1.3 of L3-L5).
5. The numbering check (``Labelling.numbering``, report.json ``numbering``): confident only when
   anchored on a sacrum that was seen and nothing along the chain casts doubt; otherwise the
   reasons (:mod:`~lvp.labelling.numbering`). Disc names are consistent by construction (two
   discs between the same vertebrae are renumbered by order, ``levels_renumbered``) and no two
   structures share a name (:meth:`Labelling.check_unique_names`).

Only TotalSpineSeg values that :mod:`lvp.labels` defines are written; vertebrae above T11 are
not written (they have no output label value).

The code is split by step (each module names its part of the method):

* :mod:`~lvp.labelling.levels`: :func:`label_levels`, the whole method in order;
* :mod:`~lvp.labelling.types`: :class:`Instance` and :class:`Labelling`, the result;
* :mod:`~lvp.labelling.thresholds`: every tuning constant (sizes in mm, ratios), with its reason;
* :mod:`~lvp.labelling.grid`: bounding boxes, connected components, pooling to the ~1 mm grid;
* :mod:`~lvp.labelling.canal_axis`: the canal's centre line and offsets from it;
* :mod:`~lvp.labelling.discs`: disc instances (off-spine components, fragments, two discs
  touching on the pooled grid, one disc in pieces) and the merged-disc check (step 1);
* :mod:`~lvp.labelling.disc_gaps`: the chain of discs: stray discs beyond its ends and discs the
  network missed (step 1);
* :mod:`~lvp.labelling.vertebrae`: bone on either side of a disc plane, a body's depth (step 2);
* :mod:`~lvp.labelling.counting`: the sacrum, names counted from it, disc names and the
  transitional-anatomy check (steps 3-4);
* :mod:`~lvp.labelling.sacrum`: the sacrum class, discs inside it and a rudimentary lowest disc
  (step 3);
* :mod:`~lvp.labelling.numbering`: the numbering check, consistent disc names and the plausible
  lumbar chain a volume must show to be read (step 5);
* :mod:`~lvp.labelling.from_labels`: the same :class:`Labelling` from a reader-edited
  TotalSpineSeg label map, level names kept as given (``lvp infer --labels``).

A constant is read by the modules that use it from :mod:`~lvp.labelling.thresholds` (imported by
name): to change one in a test, patch it in the module that uses it. This package exports only
what other packages use; helpers and constants are imported from their own modules.
"""

from lvp.labelling.levels import label_levels
from lvp.labelling.types import Instance, Labelling

__all__ = ["Instance", "Labelling", "label_levels"]
