"""Applying models: saved models as classes (``models``), training one to save (``train``), predict on images,
folders, lists and videos (``predict``, ``inputs``, ``tables``), annotated copies (``annotate``)."""
