"""Sweeps: specs (sweeps.spec), the Ray Tune trial and runner (sweeps.trial, sweeps.runner), the live progress
view (sweeps.progress) and the `memsweep` CLI (sweeps.cli). Submodules are imported on demand: importing
`sweeps` itself stays light so `memsweep --help` is fast.
"""
