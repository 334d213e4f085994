"""Synthesis: takes one phrase's annotation row and its photo and gives its dataset
rows: the mask (``masks``, fitted to the photo by ``mask_fit``), the composite (``luts``
+ ``lut_kernels`` for 3D LUTs, ``transfers`` + ``references`` for colour transfers,
``composite`` to blend), the realism judge's verdict (``realism``, with the cheap
``prejudge`` before rendering), the metrics (``metrics``, ``colorimetry``), and
``samples``, which draws and assembles the rows of a phrase."""
