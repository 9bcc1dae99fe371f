"""After the model: cleaning predicted masks and turning them into numbers per tile.

Keep here what turns raw model output into a product: mask clean-up, statistics, exports.
"""
