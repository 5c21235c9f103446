"""The plotting layer: every figure of the workbench is drawn here, from result objects or data.

Results call into these modules from their ``plot(ax=None)`` method; nothing here computes an
analysis. One module per topic (``spectra``, ``drift``, ``automata``, ``probing``,
``representations``) and ``zoo`` for the figures built from many models of the zoo.
"""
