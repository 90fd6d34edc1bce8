"""Every case across runs: ``python -m speedbench_plugin history RESULTS...``.

:mod:`.load` reads earlier runs (results files and run folders, in any order) and orders them by
time; :mod:`.series` splits cases into series that are comparable (same workload, model and
hardware), names what changed between runs, and judges each step with the gate's own statistics;
:mod:`.page` lays the series out as a self-contained HTML page and a Markdown summary with the
report's machinery.
"""
