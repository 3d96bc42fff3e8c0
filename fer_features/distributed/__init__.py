"""The Dask cluster (``--cluster``): the only modules that import dask (``cluster``: connection and
``map_unordered``; ``extract``: extraction as shards into the same cache file)."""
