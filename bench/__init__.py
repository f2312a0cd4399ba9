"""janus_frame's benchmark suite (see bench/run.py for the command and its outputs).

Workloads live in bench/workloads (one module each), the compared systems in
bench/systems.py; bench/worker.py measures one workload in a fresh process,
bench/run.py orchestrates and bench/report.py renders the table and chart.
"""
