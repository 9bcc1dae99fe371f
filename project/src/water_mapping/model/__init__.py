"""The classifier itself: how it is built, how it is scored, and its name in the registry.

Swap `classifier` for your own estimator; keep `metrics` as the scores every run reports
and `registry` as the single definition of the registered model name and alias.
"""
