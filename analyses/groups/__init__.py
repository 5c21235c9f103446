"""Group-theoretic analyses: which representation a model's transitions form (``representations``),
how it relates to a construction (``comparison``), and what snapping it to the exact representation
does to long-length accuracy (``snapping``)."""
