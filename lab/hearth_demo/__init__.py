"""`make demo`: a small house built from network namespaces, with every service running in it.

Each service has its part here (``hearth_demo.wake``, ``.audio``, ``.ci``, ``.gateway``),
listed in :data:`hearth_demo.start.PARTS`:

- ``prepare(house)``: build its hosts in the lab (a sleeping devbox, a station and zones, a
  replayed Zuul) and add settings to ``house.env`` before the services start;
- ``populate(house)``: after the services started, create its resources over gRPC.
"""
