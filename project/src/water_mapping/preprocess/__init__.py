"""From raw bands to model inputs: spectral indices and per-pixel feature sets.

`pixel_features` is the single definition of what the classifier sees; training and the
MLflow model (model_pipeline) both call it, so they can never disagree. Feature sets for
training are kept in the data store under `features/<dataset>/`.
"""
