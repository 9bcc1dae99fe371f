"""The deployable model: an MLflow pyfunc that takes raw bands and returns a water mask.

It wraps the trained classifier together with the feature computation, so whoever loads
`models:/example-water-mask@champion` needs no knowledge of the preprocessing.
"""
