"""Import-light markers shared by the lmms-eval model classes and task code."""

#: A failed sample's response starts with this, followed by ``"ErrorType: source: reason"``.
ERROR_PREFIX = "[videolmm error] "
