"""Serving load as real traffic: open-loop arrival schedules (Poisson, gamma bursts, ramp-up,
duration-bound), SLO attainment and goodput, where speculative decoding stops paying as the request
rate grows, and a load generator that checks itself and can spread over several client processes.
Loaded through the ``speedbench_load`` pytest11 entry point (:mod:`speedbench_plugin.load.plugin`)."""
