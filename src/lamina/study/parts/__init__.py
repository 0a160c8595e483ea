"""One module per part of the study; :func:`lamina.study.analyze_table` lists them in order.

``capture`` (Part 1), ``accuracy`` (2), ``layer`` (3), ``divergences`` (4),
``significance`` (5), ``profile`` (6); ``notebook`` holds the notebook
compatibility mode's versions of Parts 3 and 4.
"""
