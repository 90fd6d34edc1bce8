"""Telemetry per measured round (energy, power, load, CPU seconds) and what each token cost.

:mod:`.sources` reads NVML, RAPL and the engine's process tree; :mod:`.sampler` samples them on
its own thread and cuts the samples into rounds; :mod:`.cost` turns a case's rounds into the
record's ``cost`` section and ``cost_vs_none``; :mod:`.plugin` wires them into a session.
"""
