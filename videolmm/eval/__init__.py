"""lmms-eval integration: model manifests, model classes and the task-folder bridge.

Import order matters for lmms-eval's discovery: :mod:`videolmm.eval.manifests` imports
neither torch nor the core; :mod:`videolmm.eval.model` is imported only when lmms-eval
instantiates one of our models.
"""
