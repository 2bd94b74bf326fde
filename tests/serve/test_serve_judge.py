"""videolmm's own Serve app as the judge of its judged tasks (issue 6): every protocol's exact
messages, system prompt included, through the judge client over real HTTP."""

from __future__ import annotations

import pytest
from serve_helpers import API_KEY, TRAINED, ServeApp

from videolmm.tasks.judge import PROTOCOLS, JudgeClient, JudgeRequest, JudgeSettings


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_the_serve_app_answers_every_judge_protocol(serve_app: ServeApp, protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    messages = spec.messages(
        question="What colour is the moving square?",
        answer="red",
        prediction="red",
        caption="A red square moves to the right over a textured background.",
    )
    settings = JudgeSettings(
        model=TRAINED, base_url=f"{serve_app.base_url}/v1", api_key=API_KEY, max_attempts=1, timeout_s=60
    )
    reply = JudgeClient(settings).complete(JudgeRequest(messages, temperature=0.0))
    assert reply.ok, reply.error  # a system message is taken, not refused with 400
    assert isinstance(reply.text, str) and reply.attempts == 1
    assert (reply.model, reply.served_model) == (TRAINED, TRAINED)
