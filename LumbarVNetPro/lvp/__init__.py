"""LumbarVNetPro core: lumbar spine MRI reading without Slicer.

Pure Python (no ``slicer``, ``qt`` or ``vtk`` imports): input validation, the network,
inference, level labelling, measurements, grading, scan planes, reports, the reading
database, reader-study statistics, training and the ``lvp`` command line.
"""

__version__ = "0.1.0"
