"""Getting tiles in and out: where raw imagery and its ground truth come from.

The example makes deterministic synthetic Sentinel-2-like tiles (no downloads) and keeps
them in the data store under `raw/<dataset>/`. Replace `synthetic_tiles` with a reader for
your own imagery and keep `tile_store` as the way the rest of the project gets tiles.
"""
