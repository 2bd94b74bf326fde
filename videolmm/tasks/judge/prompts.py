"""The seeds' judge prompts and reply parsers, byte-exact, as :class:`JudgeProtocol` objects.

Three protocols, each cited to the file it was read from (the snapshot commit is the one the
search index held; see ``docs/tasks.md``):

* :data:`VIDEO_CHATGPT_QA`: zero-shot open-ended QA (MSVD/MSRVTT/TGIF/ActivityNet-QA) as scored by
  Video-ChatGPT ``quantitative_evaluation/evaluate_activitynet_qa.py`` (mbzuai-oryx/Video-ChatGPT
  @69ea1db) and, identically, Video-LLaVA ``videollava/eval/video/eval_video_qa.py``
  (PKU-YuanGroup/Video-LLaVA @a8404b9). The reply is a Python dict string read with
  ``ast.literal_eval``; ``score`` is ``int(score)``; accuracy counts ``"yes" in pred.lower()``.
* :data:`HOUND_OFFICIAL_QA`: LLaVA-Hound's "official" 5k subsets of MSVD/MSRVTT/TGIF, scored by
  ``llava_hound_dpo/test/eval/eval_official_qa.py`` (RifleZhang/LLaVA-Hound-DPO @2cf6146): the
  same questions to the judge, reworded with newlines and passed through ``format_docstring``;
  predictions truncated to 256 words; the score is the first integer after ``'score':`` (regex)
  and yes/no is read from the **raw** reply.
* :data:`HOUND_CAPTION_QA`: LLaVA-Hound's caption-grounded in-domain / out-of-domain QA, scored by
  ``dpo_experiment/test/eval/eval_qa.py`` with ``llava_hound_dpo/inference/utils.py:get_score``
  (@902afde / @c56f738). No system prompt; ``Score: N`` parsed (majority vote over the numbers in
  the reply when that line is missing); accuracy is the share of scores >= 3.

This module is pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Pred = Literal["yes", "no"]


@dataclass(frozen=True)
class Verdict:
    """What a judge reply says about one prediction.

    Attributes:
        pred: ``"yes"`` / ``"no"`` as the seed's accuracy counts it, or None when the reply
            gives neither (the seed leaves such replies out of the accuracy).
        score: the score as the seed computes it (``int`` for the QA protocols, ``float`` for the
            caption protocol), or None when the reply gives none (left out of the mean).
        problem: why the reply did not parse completely (None when it did). A reply with a
            problem is counted as a parse failure and never scored as 0.
        note: how a value was recovered when the seed's primary form was absent.
    """

    pred: Pred | None
    score: float | None
    problem: str | None = None
    note: str | None = None

    @property
    def parsed(self) -> bool:
        """True when the reply parsed with no problem."""
        return self.problem is None


def format_docstring(text: str) -> str:
    """LLaVA-Hound's ``data_processing.utils.format_docstring``: drop indentation after newlines, strip."""
    return re.sub("\n +", "\n", text).strip()


def _yes_no(text: str) -> Pred | None:
    # The seeds' rule, in this order: "yes" anywhere wins, else "no" anywhere, else neither.
    low = text.lower()
    if "yes" in low:
        return "yes"
    if "no" in low:
        return "no"
    return None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _finite(score: float) -> bool:
    """Whether a parsed score is a real number a mean can use (``1e999``, NaN and 10**400 are not)."""
    try:
        return math.isfinite(float(score))
    except OverflowError:
        return False


# ----------------------------------------------------------------------------- parsers


def parse_python_dict(reply: str) -> Verdict:
    """Video-ChatGPT / Video-LLaVA: ``ast.literal_eval`` the reply; ``int(score)``; yes/no from ``pred``.

    ``{'pred': 'yes', 'score': 4.8}`` gives ``Verdict("yes", 4)`` (the seeds' ``int()`` truncates).
    """
    try:
        value = ast.literal_eval(reply)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        return Verdict(None, None, problem=f"not a Python literal ({type(exc).__name__}): {_short(reply)!r}")
    if not isinstance(value, dict):
        return Verdict(None, None, problem=f"not a dict but {type(value).__name__}: {_short(reply)!r}")
    missing = [k for k in ("pred", "score") if k not in value]
    if missing:
        return Verdict(None, None, problem=f"dict lacks {', '.join(missing)}: {_short(reply)!r}")
    raw_score = value["score"]
    try:
        score: int | None = int(raw_score) if _finite(raw_score) else None
        score_problem = None if score is not None else f"score {_short(repr(raw_score))} is not a finite number"
    except (TypeError, ValueError):
        score, score_problem = None, f"score {_short(repr(raw_score))} is not an integer"
    pred = _yes_no(value["pred"]) if isinstance(value["pred"], str) else None
    pred_problem = None if pred else f"pred {value['pred']!r} is neither yes nor no"
    problem = "; ".join(p for p in (score_problem, pred_problem) if p) or None
    return Verdict(pred, score, problem=problem)


#: Longest integer score accepted (a float mean must hold it; larger is a parse failure, not a crash).
_MAX_SCORE_DIGITS = 300
_HOUND_SCORE = re.compile(r"'score'\s*:\s*(\d+)|\"score\"\s*:\s*(\d+)|'score':(\d+)|\"score\":(\d+)")


def parse_hound_official(reply: str) -> Verdict:
    """LLaVA-Hound official: integer after ``'score':`` (regex); yes/no anywhere in the raw reply.

    ``{'pred': 'yes', 'score': 4.8}`` gives ``Verdict("yes", 4)`` (``\\d+`` stops at the dot).
    """
    match = _HOUND_SCORE.search(reply)
    digits = next(g for g in match.groups() if g is not None) if match else None
    # a digit string too long for int() (Python's 4300-digit limit) or for a float mean is no score
    score = int(digits) if digits is not None and len(digits) <= _MAX_SCORE_DIGITS else None
    pred = _yes_no(reply)
    problems = []
    if digits is not None and score is None:
        problems.append(f"score of {len(digits)} digits is not a usable number")
    elif score is None:
        problems.append("no 'score': <int> in reply")
    if pred is None:
        problems.append("neither yes nor no in reply")
    problem = f"{'; '.join(problems)}: {_short(reply)!r}" if problems else None
    return Verdict(pred, score, problem=problem)


_SCORE_LINE = re.compile(r"Score: (\d+\.?\d*)")
_NUMBER = re.compile(r"\b\d+\.?\d*\b")
#: LLaVA-Hound's caption-grounded accuracy threshold: ``if score >= 3.0: acc += 1``.
CAPTION_PASS_SCORE = 3.0


def parse_caption_score(reply: str) -> Verdict:
    """LLaVA-Hound caption-grounded: ``Score: N``; else majority vote over numbers (ties averaged).

    Where the seed returns a default score of 1 for a reply with no number at all, this returns a
    parse failure instead (counted, not scored).
    """
    match = _SCORE_LINE.search(reply)
    note = None
    if match:
        score = float(match.group(1))
        if not _finite(score):
            return Verdict(None, None, problem=f"score {_short(match.group(1), 20)} is not a finite number")
    else:
        numbers = [float(n) for n in _NUMBER.findall(reply)]
        if not numbers:
            return Verdict(None, None, problem=f"no 'Score: N' and no number in reply: {_short(reply)!r}")
        if not all(_finite(n) for n in numbers):
            return Verdict(None, None, problem=f"a number in the reply is not finite: {_short(reply)!r}")
        counts = Counter(numbers).most_common()
        top = counts[0][1]
        candidates = [n for n, c in counts if c == top]
        score = sum(candidates) / len(candidates)
        if not _finite(score):  # finite numbers whose sum overflows
            return Verdict(None, None, problem=f"the numbers in the reply overflow: {_short(reply)!r}")
        note = f"no 'Score: N' line; majority vote over numbers {numbers}"
    return Verdict("yes" if score >= CAPTION_PASS_SCORE else "no", score, note=note)


# ----------------------------------------------------------------------------- prompts

# mbzuai-oryx/Video-ChatGPT quantitative_evaluation/evaluate_activitynet_qa.py (@69ea1db), identical in
# PKU-YuanGroup/Video-LLaVA videollava/eval/video/eval_video_qa.py (@a8404b9). The adjacent literals are
# concatenated with no separator, exactly as in the source ("task:------##INSTRUCTIONS: ").
VIDEO_CHATGPT_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs. "
    "Your task is to compare the predicted answer with the correct answer and determine if they match "
    "meaningfully. Here's how you can accomplish the task:"
    "------"
    "##INSTRUCTIONS: "
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)
VIDEO_CHATGPT_USER = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {prediction}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, "
    "with 5 indicating the highest meaningful match. "
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', "
    "where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING."
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {{'pred': 'yes', 'score': 4.8}}."
)

# RifleZhang/LLaVA-Hound-DPO llava_hound_dpo/test/eval/eval_official_qa.py (@2cf6146): the raw
# triple-quoted templates, trailing spaces included; rendered through format_docstring as the seed does.
HOUND_OFFICIAL_SYSTEM_RAW = (
    "\n"
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs. \n"
    "Your task is to compare the predicted answer with the correct answer and determine if they match "
    "meaningfully. Here's how you can accomplish the task:\n"
    "------\n"
    "##INSTRUCTIONS: \n"
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer.\n"
)
HOUND_OFFICIAL_USER_RAW = (
    "\n"
    "Please evaluate the following video-based question-answer pair:\n"
    "\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {prediction}\n"
    "\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, "
    "with 5 indicating the highest meaningful match. \n"
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', "
    "where value of 'pred' is a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING.\n"
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. \n"
    "For example, your response should look like this: {{'pred': 'yes', 'score': 4.8}}.\n"
)

# RifleZhang/LLaVA-Hound-DPO dpo_experiment/test/eval/eval_qa.py (@902afde). The llava_hound_dpo/ tree calls
# video_qa/eval_qa.py, which the source index does not hold; this is the same pipeline's copy.
HOUND_CAPTION_USER_RAW = (
    "\n"
    "Given the following inputs:\n"
    "\n"
    "1. **Ground Truth Video Caption**: {caption}\n"
    "2. **Question Related to the Caption**: {question}\n"
    "3. **Ground Truth Answer**: {answer}\n"
    "4. **Model Predicted Answer**: {prediction}\n"
    "\n"
    "Your task is to evaluate the model's predicted answer against the ground truth answer, based on the "
    "context provided by the video caption and the question. Consider the following criteria for evaluation:\n"
    "\n"
    "- **Relevance**: Does the predicted answer directly address the question posed, considering the "
    "information provided in the video caption?\n"
    "- **Accuracy**: Compare the predicted answer to the ground truth answer. Does the prediction accurately "
    "reflect the information given in the ground truth answer without introducing factual inaccuracies?\n"
    "- **Clarity**: Assess the clarity of the predicted answer. Look for issues such as repetition, unclear "
    "descriptions, or any grammatical errors that could hinder understanding.\n"
    "- **Completeness**: Determine if the predicted answer fully covers the scope of the ground truth answer. "
    "Does it leave out critical information or does it include all necessary details?\n"
    "\n"
    "**Output Format**:\n"
    "Explanation: <brief judgement of prediction>\n"
    "Score: <an integer score of quality from 1-5>\n"
)


def truncate_words(text: str, max_words: int) -> str:
    """LLaVA-Hound's ``maybe_truncate``: keep the first ``max_words`` whitespace-separated words."""
    words = text.split()
    return " ".join(words[:max_words]) if len(words) > max_words else text


@dataclass(frozen=True)
class JudgeProtocol:
    """One seed's way of asking a judge and reading its reply.

    Attributes:
        name: short id, recorded with every score.
        default_model: the judge model the seed used (overridable; see :mod:`.client`).
        system_prompt: the system message, or None for none.
        user_template: ``str.format`` template with ``question``, ``answer``, ``prediction``
            (and ``caption`` when :attr:`needs_caption`).
        parse: reply text → :class:`Verdict`.
        temperature: sampling temperature sent to the judge.
        top_p: ``top_p`` sent to the judge, or None to leave it out of the request.
        max_prediction_words: truncate predictions to this many words first (None: never).
        needs_caption: whether the template needs the ground-truth caption.
        source: where the prompt and parser come from.
    """

    name: str
    default_model: str
    system_prompt: str | None
    user_template: str
    parse: Callable[[str], Verdict]
    temperature: float = 0.0
    top_p: float | None = None
    max_prediction_words: int | None = None
    needs_caption: bool = False
    source: str = ""

    def messages(
        self, *, question: str, answer: str, prediction: str, caption: str | None = None
    ) -> tuple[dict[str, str], ...]:
        """The chat messages for one judged prediction (exactly what the seed sends).

        Raises:
            ValueError: the protocol needs a caption and none was given.
        """
        if self.needs_caption and caption is None:
            raise ValueError(f"judge protocol {self.name!r} needs the ground-truth caption")
        if self.max_prediction_words is not None:
            prediction = truncate_words(prediction, self.max_prediction_words)
        user = self.user_template.format(question=question, answer=answer, prediction=prediction, caption=caption)
        system = () if self.system_prompt is None else ({"role": "system", "content": self.system_prompt},)
        return (*system, {"role": "user", "content": user})


VIDEO_CHATGPT_QA = JudgeProtocol(
    name="video_chatgpt_qa",
    # Both seeds call "gpt-3.5-turbo" unpinned and send no temperature (the API default, 1.0); videolmm
    # pins temperature 0 so that a cached verdict is the verdict (docs/tasks.md).
    default_model="gpt-3.5-turbo",
    system_prompt=VIDEO_CHATGPT_SYSTEM,
    user_template=VIDEO_CHATGPT_USER,
    parse=parse_python_dict,
    temperature=0.0,
    source="mbzuai-oryx/Video-ChatGPT quantitative_evaluation/evaluate_activitynet_qa.py; "
    "PKU-YuanGroup/Video-LLaVA videollava/eval/video/eval_video_qa.py",
)

HOUND_OFFICIAL_QA = JudgeProtocol(
    name="hound_official_qa",
    # GPT_MODEL_NAME in LLaVA-Hound's setup/set_path.sh: "Specific version for testing: gpt-3.5-turbo-0301".
    default_model="gpt-3.5-turbo-0301",
    system_prompt=format_docstring(HOUND_OFFICIAL_SYSTEM_RAW),
    user_template=format_docstring(HOUND_OFFICIAL_USER_RAW),
    parse=parse_hound_official,
    temperature=0.0,
    top_p=1.0,
    max_prediction_words=256,
    source="RifleZhang/LLaVA-Hound-DPO llava_hound_dpo/test/eval/eval_official_qa.py",
)

HOUND_CAPTION_QA = JudgeProtocol(
    name="hound_caption_qa",
    default_model="gpt-3.5-turbo-0301",
    system_prompt=None,
    user_template=format_docstring(HOUND_CAPTION_USER_RAW),
    parse=parse_caption_score,
    temperature=0.0,
    top_p=1.0,
    max_prediction_words=256,
    needs_caption=True,
    source="RifleZhang/LLaVA-Hound-DPO dpo_experiment/test/eval/eval_qa.py; llava_hound_dpo/inference/utils.py",
)

#: Every protocol by name.
PROTOCOLS: dict[str, JudgeProtocol] = {p.name: p for p in (VIDEO_CHATGPT_QA, HOUND_OFFICIAL_QA, HOUND_CAPTION_QA)}

__all__ = [
    "CAPTION_PASS_SCORE",
    "HOUND_CAPTION_QA",
    "HOUND_OFFICIAL_QA",
    "PROTOCOLS",
    "VIDEO_CHATGPT_QA",
    "JudgeProtocol",
    "Verdict",
    "format_docstring",
    "parse_caption_score",
    "parse_hound_official",
    "parse_python_dict",
    "truncate_words",
]
