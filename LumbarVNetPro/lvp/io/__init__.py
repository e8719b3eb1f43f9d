"""Input and output of images: reading, canonical orientation, validation, DICOM.

Use :func:`lvp.io.read.read_volume` to read any supported input (DICOM folder, NIfTI, NRRD,
MHA) into a validated :class:`lvp.io.volume.Volume` in LVP's canonical orientation.
"""
