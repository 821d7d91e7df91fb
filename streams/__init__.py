"""The streaming shells: the Faust app and its topics (:mod:`.app`), the ingest that
stores events exactly once (:mod:`.ingest`, :mod:`.take`, :mod:`.transport`), the monitor
that closes windows with the core's step (:mod:`.monitor`) and the worker process that
runs them (:mod:`.worker`).

Nothing is imported here: importing a shell module starts nothing, but loads Faust.
"""

__all__: list[str] = []
