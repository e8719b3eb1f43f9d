"""Tuning constants of the level labelling (sizes in mm and mm³, ratios), each with its reason.

Read by name by the modules of :mod:`lvp.labelling` that use them (and re-exported there).
"""


MIN_DISC_MM3 = 150.0  # smaller disc components are fragments
MIN_VERTEBRA_MM3 = 800.0
SACRUM_LENGTH_RATIO = 1.4
# Without a sacrum class, vertebra-class bone below the lowest disc anchors a confident numbering
# only when at least this many times as long as the median of the three vertebrae above it.
SACRUM_TRUST_RATIO = 2.0
# Body depth against the median of L3-L5: at most THORACIC_DEPTH_RATIO is clearly thoracic, at
# least LUMBAR_DEPTH_RATIO clearly lumbar. On the 31 SPIDER slabs T11, T12 and L1 all lie between
# 0.8 and 1.3 of L3-L5 (0.88 flagged 11 normal cases): only a clear step between two neighbours
# counts, and a vertebra cut by the field of view is not measured.
THORACIC_DEPTH_RATIO = 0.80
LUMBAR_DEPTH_RATIO = 0.95
RUDIMENTARY_DISC_RATIO = 0.4  # lumbosacral disc volume / L4-L5 disc volume
# A disc lies in front of the canal: its centre within these offsets (mm) of the canal's centre
# line at the same height; anything else the network called disc is not an intervertebral disc.
DISC_MAX_LR_MM = 30.0
DISC_MAX_ANTERIOR_MM = 75.0
DISC_MAX_POSTERIOR_MM = 10.0
# Bone this far from the canal line (mm) is not part of the spine (vertebrae reach ~50 mm in
# front of the canal, ~70 mm behind it with the spinous process and ~45 mm to each side).
BONE_MAX_LR_MM = 50.0
BONE_MAX_ANTERIOR_MM = 80.0
BONE_MAX_POSTERIOR_MM = 90.0
# A vertebra straddles the canal's centre line: the mean LR offset of its bone is at most
# VERTEBRA_MAX_MEAN_LR_MM and at least MIN_VERTEBRA_MM3 of it lies within VERTEBRA_CORE_LR_MM of
# the line (a lumbar body is 40-50 mm wide). Bone off to one side (sacral ala, ilium, which model
# 1.1.0 calls vertebra ~30 mm lateral on full-FOV 1.5 T series) is not a vertebra to count.
VERTEBRA_MAX_MEAN_LR_MM = 15.0
VERTEBRA_CORE_LR_MM = 15.0
# A disc component centred farther than this (mm, LR) from the canal line and smaller than
# SMALL_DISC_RATIO of the median disc is a fragment beside the spine, not a level (model 1.1.0
# leaves 200-400 mm³ pieces ~20-30 mm lateral on full-FOV 1.5 T series).
DISC_FRAGMENT_LR_MM = 15.0
DISC_BEYOND_CANAL_MM = 100.0  # the canal may be segmented only part of the way down
BONE_BEYOND_CANAL_MM = 80.0
BODY_BEHIND_CANAL_CENTRE_MM = 8.0  # bone this far in front of the canal's centre is body
FRAGMENT_JOIN_MM = 20.0  # a small disc fragment farther than this from every disc is dropped
SAME_LEVEL_RATIO = 0.45  # two discs closer than this fraction of the median spacing: one disc
# A small disc (below this fraction of the median disc) squeezed between two others (both gaps
# below SQUEEZED_RATIO of the spacing) is a fragment inside a vertebra, not a level.
SMALL_DISC_RATIO = 0.3
SQUEEZED_RATIO = 0.7
STRAY_DISC_RATIO = 2.2  # a small disc this many spacings beyond the end of the chain is not a level
MISSING_DISC_RATIO = 1.65  # a gap this many times the neighbouring spacings hides missed disc(s)
# Two discs with a vertebra between them: at least this fraction of the segment joining their
# centres is bone (pieces of one disc have disc or nothing between them).
BONE_BETWEEN_RATIO = 0.3
# A disc at least this many times as thick as the median of the others is probably two discs
# merged (``merged_disc``): the names of the levels above it are not trusted.
MERGED_DISC_THICKNESS_RATIO = 1.75
MERGED_DISC_CONFIDENCE = 0.4
# Every level name is in doubt when the lumbar count is not five: cap each level's confidence.
TRANSITIONAL_CONFIDENCE = 0.6
# Sacrum anchoring (lvp.labelling.sacrum).
# A disc with at least this much sacrum-class bone above it, inside its footprint, lies inside or
# below the sacrum (an S1-S2 remnant): it is never a lumbar level.
SACRUM_ABOVE_DISC_MM3 = 300.0
# The lowest disc smaller than REMNANT_DISC_RATIO of the median of the discs above it (and not cut
# by the field of view) is taken as an S1-S2 remnant (S1 segmented as a vertebra above it) and not
# named lumbar. A lowest disc below SMALL_LOWEST_DISC_RATIO keeps its name but the numbering is
# not confident: a degenerated L5-S, a remnant or the rudimentary L5-S of a sacralised L5 all
# look like it. On the 31 SPIDER
# reference masks and the network's 31 outputs the real L5-S is never below 0.26 of the median
# (spider50, spider11 between 0.26 and 0.37).
REMNANT_DISC_RATIO = 0.2
SMALL_LOWEST_DISC_RATIO = 0.4
# The sacrum-class component taken as the sacrum must be at least this large (smaller ones are
# stray voxels, not the bone the numbering can anchor on).
MIN_SACRUM_MM3 = 1500.0
# The sacrum-class component anchored on is centred on the spine: within this distance (mm) of
# the canal line in LR (the S1 body straddles it), and at most this far behind the canal's
# centre (the sacral canal and spinous tubercles); model 1.1.0 also calls pieces of the ilium and
# soft tissue 25-35 mm to the side or far in front "sacrum".
SACRUM_MAX_LR_MM = 20.0
SACRUM_MAX_POSTERIOR_MM = 30.0
