"""The top layer: the ``recsys`` CLI and the demo pipeline.

Only this package may import every other one (``recsys`` core, ``training``, ``index``, ``api``);
each command is a thin wrapper over a library function of the layers below.
"""
