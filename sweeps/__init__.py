"""Sweeps: specs (sweeps.spec, presets in sweeps.presets), the Ray Tune trial and runner (sweeps.trial,
sweeps.runner, Ctrl-C handling in sweeps.interrupt), the live progress view (sweeps.progress) and the `memsweep`
CLI (sweeps.cli, with sweeps.launch for run/demo). Submodules are imported on demand: importing `sweeps` itself
stays light so `memsweep --help` is fast.
"""
