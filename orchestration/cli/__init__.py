"""The ``recsys`` command line: thin Typer wrappers over library functions."""
