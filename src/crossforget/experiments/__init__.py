"""Runners that glue data, models, methods and metrics into commands and reports."""
