"""Reporting: result tables and plots (``tables``), feature maps (``feature_map``), significance text, the
seed experiments' reports (``experiments``), the machine line (``machine``)."""
