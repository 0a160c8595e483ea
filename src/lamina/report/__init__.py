"""The report: figures, the HTML page, the console summary and ``layers.csv``.

Everything here reads study results (a ``results.json`` dict, and the per-token
arrays the figures need); nothing here computes statistics.
"""
