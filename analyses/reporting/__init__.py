"""Pipelines over checkpoints and the zoo: the ``analyze --json`` summary, the zoo audit, the HTML
report and the paper figures. They share one registry of analyses (``registry.ANALYSES``)."""
