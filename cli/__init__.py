"""The ``lakestore`` command line: a thin layer over the lakestore library."""
