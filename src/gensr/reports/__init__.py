"""Reports: the top library layer above ``inference`` (it uses inference, metrics and io; only ``cli`` is above).

* :mod:`.compare` - the GAN-vs-flow comparison of ``gensr compare``: every model (and network-interpolation
  alpha, and flow temperature) on a folder of HR images, with a resumable per-item cache.
* :mod:`.crops` - where the models differ most: crop windows and the side-by-side tiles.
* :mod:`.render` - ``report.md`` and the self-contained ``report.html``.
* :mod:`.plot` - the perception-distortion plot (matplotlib, optional).

Import the submodules directly; this package imports nothing.
"""
