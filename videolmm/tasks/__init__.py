"""lmms-eval task folders shipped with videolmm (YAML + pure ``utils.py`` per folder).

lmms-eval finds them through the ``lmms_eval.tasks`` entry point and videolmm's task bridge
(:mod:`videolmm.eval.task_bridge`), or with ``--include_path <this folder>``.
"""
