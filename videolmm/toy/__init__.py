"""Fixtures that are real code: tiny checkpoints, the trained tiny assets, synthetic clips, training.

Never imported by the core at run time: families name their tiny builders by string path.
"""
