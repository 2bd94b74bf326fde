"""Shared code of the judged open-ended video QA tasks (``zeroshot_qa/``, ``hound_qa/``).

* :mod:`.sources`: where each dataset's questions and videos are (local copy or the seed's hub
  repository), resolved when lmms-eval builds the task.
* :mod:`.scoring`: ``process_results`` that asks the judge once per doc and records the verdict.
"""
