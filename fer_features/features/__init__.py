"""Features: the extraction spec (``spec``), ``FeatureExtractor``, whole-dataset extraction (``extract``), the
HDF5 cache (``cache``, ``cache_writer``), merging two caches (``merge``), leak-free augmentation (``augment``)."""
