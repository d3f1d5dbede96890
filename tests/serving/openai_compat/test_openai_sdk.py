"""The official openai SDK and LangChain's ChatOpenAI against finserve over real HTTP: the whole stack
(Presidio, MiniLM + Milvus Lite, a real Redis, the real SmolLM2 weights) served by uvicorn in-process
(conftest's `served`), and, for one test of each SDK behaviour (chat, stream with usage, completions, embeddings,
models, typed errors), also as the Ray Serve graph `finserve up` deploys (`ray_served`). Every error must
arrive as the SDK's typed exception, every request leaves an audit line."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from finserve.serving.audit import read_records

pytestmark = pytest.mark.slow

MODEL = "finserve-banking"
EMBEDDER = "all-MiniLM-L6-v2"
CARD = "4111 1111 1111 1111"
OTHER_CARD = "5500 0000 0000 0004"
SSN = "536-22-8145"


ON_RAY: set[str] = set()  # the tests that also run against the Ray Serve graph


def on_ray(test):
    ON_RAY.add(test.__name__)
    return test


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "stack" in metafunc.fixturenames:
        kinds = ["uvicorn", "ray"] if metafunc.function.__name__ in ON_RAY else ["uvicorn"]
        metafunc.parametrize("stack", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest):
    """The stack a test runs against: conftest's `served` (uvicorn) or `ray_served` (Ray Serve), one of each
    per module, both with the same config."""
    return request.getfixturevalue("served" if request.param == "uvicorn" else "ray_served")


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base}/v1", api_key=stack.key, max_retries=0, timeout=120)


def audit(stack, request_id: str) -> list[dict]:
    return [x for x in read_records(stack.config.audit.path) if x["request_id"].startswith(request_id)]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@on_ray
def test_chat_answers_with_usage_and_the_finserve_object(client, stack):
    resp = client.chat.completions.create(
        model=MODEL, messages=user(f"My card {CARD} never arrived"), max_tokens=16
    )
    assert resp.object == "chat.completion" and resp.choices[0].message.content.strip()
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 16
    info = resp.model_extra["finserve"]
    assert info["pii"]["input"] == {"CREDIT_CARD": 1}
    [line] = audit(stack, info["request_id"])
    assert line["status"] == 200 and CARD not in line["input"]


@on_ray
def test_stream_ends_with_a_usage_chunk_without_choices(client, stack):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("How do I activate my card?"),
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *answer, last = chunks
    assert last.choices == [] and last.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in answer)
    assert text.strip()
    assert 0 < last.usage.completion_tokens <= 12 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in answer)
    request_id = answer[-1].model_extra["finserve"]["request_id"]
    [line] = audit(stack, request_id)
    assert line["status"] == 200 and line["output"] == text


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=user("Exchange rate?"), max_tokens=6, stream=True
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_content_part_arrays_and_the_developer_role(client):
    resp = client.chat.completions.create(
        model=MODEL,
        max_tokens=8,
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Answer in one sentence."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "My card"},
                    {"type": "text", "text": f"{CARD} has not arrived"},
                ],
            },
        ],
    )
    assert resp.choices[0].message.content.strip()
    # Both text parts were read (and guarded): the card in the second part was found.
    assert resp.model_extra["finserve"]["pii"]["input"] == {"CREDIT_CARD": 1}


@on_ray
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                        ],
                    }
                ]
            },
            "messages.0.content.1.type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "c1", "content": "42"},
                ]
            },
            "messages.1.role",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "user", "content": "and?"},
                ]
            },
            "messages.1.tool_calls",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "balance", "parameters": {"type": "object"}}}
                ]
            },
            "tools",
        ),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"response_format": {"type": "json_object"}}, "response_format.type"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_what_finserve_cannot_honour_is_a_bad_request_naming_the_field(client, stack, extra, param):
    body = {"model": MODEL, "messages": user("hi"), **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**body)
    assert err.value.status_code == 400 and err.value.param == param
    assert param in err.value.message
    request_id = err.value.request_id  # what the SDK reads from x-request-id: one id, through Ray's proxy too
    assert request_id == err.value.body["request_id"]
    [line] = audit(stack, request_id)  # refused, and still audited
    assert line["status"] == 400 and line["error"] == "invalid_request"


def test_stop_sequences_cut_the_answer(client):
    resp = client.chat.completions.create(
        model=MODEL, messages=user("How do I activate my card?"), max_tokens=40, stop=[".", ","]
    )
    text = resp.choices[0].message.content
    assert "." not in text and "," not in text
    assert resp.choices[0].finish_reason == "stop"


def test_max_completion_tokens_and_seed(client):
    ask = dict(model=MODEL, messages=user("Why was I charged a fee?"), max_completion_tokens=3, seed=7)
    first, second = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    assert first.usage.completion_tokens == 3 and first.choices[0].finish_reason == "length"
    assert first.choices[0].message.content == second.choices[0].message.content  # greedy: deterministic


@on_ray
def test_completions_one_prompt_and_a_list(client, stack):
    one = client.completions.create(model=MODEL, prompt=f"Card {CARD} lost", max_tokens=8)
    assert one.object == "text_completion" and one.choices[0].text.strip()
    assert one.usage.completion_tokens <= 8
    assert one.choices[0].model_extra["finserve"]["pii"]["input"] == {"CREDIT_CARD": 1}
    [line] = audit(stack, one.id.removeprefix("cmpl-"))
    assert line["status"] == 200 and CARD not in line["input"]

    two = client.completions.create(model=MODEL, prompt=["Exchange rate?", "Activate my card"], max_tokens=6)
    assert [c.index for c in two.choices] == [0, 1] and all(c.text.strip() for c in two.choices)
    rid = two.id.removeprefix("cmpl-")
    assert sorted(x["request_id"] for x in audit(stack, rid)) == [f"{rid}-0", f"{rid}-1"]


def test_completions_stream_with_usage(client):
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="How do I activate my card?",
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *answer, last = chunks
    assert last.choices == [] and 0 < last.usage.completion_tokens <= 8
    assert "".join(c.choices[0].text for c in answer).strip()
    assert answer[-1].choices[0].finish_reason in ("stop", "length")


def test_completions_refuse_what_they_cannot_honour(client):
    for extra, param in (
        ({"echo": True}, "echo"),
        ({"n": 3}, "n"),
        ({"suffix": "x"}, "suffix"),
        ({"prompt": [1, 2, 3]}, "prompt"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(**{"model": MODEL, "prompt": "hi", **extra})
        assert err.value.param == param


@on_ray
def test_embeddings_are_of_the_masked_text(client, stack):
    # The SDK asks for base64 by default and decodes it: both encodings must give the same vectors.
    resp = client.embeddings.with_raw_response.create(
        model=EMBEDDER,
        input=[f"my card {CARD} was declined", f"my card {OTHER_CARD} was declined", "exchange rates abroad"],
    )
    assert resp.headers["x-finserve-masked"] == "true"
    out = resp.parse()
    vectors = np.array([d.embedding for d in out.data])
    assert out.model == EMBEDDER and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Both card numbers are masked to the same token before embedding: the same vector.
    assert np.allclose(vectors[0], vectors[1], atol=1e-5) and not np.allclose(
        vectors[0], vectors[2], atol=1e-2
    )
    floats = client.embeddings.create(model=EMBEDDER, input="exchange rates abroad", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vectors[2], atol=1e-5)
    info = out.model_extra["finserve"]
    assert info["masked"] is True and info["pii"] == {"CREDIT_CARD": 2}
    [line] = audit(stack, info["request_id"])
    assert line["status"] == 200 and line["model"] == EMBEDDER
    assert CARD not in line["input"] and OTHER_CARD not in line["input"] and "<CREDIT_CARD>" in line["input"]


@on_ray
def test_models_list_names_chat_models_and_the_embedder(client):
    assert [m.id for m in client.models.list()] == [MODEL, EMBEDDER]


@on_ray
def test_errors_arrive_as_the_sdks_typed_exceptions(client, stack):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.base}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model=MODEL, messages=user("hi")
        )
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert err.value.param == "model" and "gpt-4o" not in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    with pytest.raises(openai.UnprocessableEntityError) as blocked:
        client.chat.completions.create(model=MODEL, messages=user(f"my SSN is {SSN}"))
    assert "US_SSN" in blocked.value.message and SSN not in str(blocked.value.body)
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model=EMBEDDER, input=f"SSN {SSN}")
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=MODEL, prompt=f"SSN {SSN}")
    raw = stack.config.audit.path.read_text()
    assert SSN not in raw


def test_langchain_chat_openai_answers_streams_and_reports_usage(stack):
    langchain_openai = pytest.importorskip(
        "langchain_openai", reason="langchain-openai (test extra) not installed"
    )
    llm = langchain_openai.ChatOpenAI(
        model=MODEL,
        base_url=f"{stack.base}/v1",
        api_key=stack.key,
        max_tokens=10,
        temperature=0,
        max_retries=0,
        stream_usage=True,
    )
    answer = llm.invoke([("system", "Be brief."), ("human", "How do I activate my card?")])
    assert answer.content.strip()
    assert answer.usage_metadata["output_tokens"] > 0 and answer.usage_metadata["input_tokens"] > 0
    chunks = list(llm.stream("What is the exchange rate?"))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content.strip()
    assert total.usage_metadata is not None and 0 < total.usage_metadata["output_tokens"] <= 10


def test_the_generator_replica_s_engine_figures_reach_ray_s_metrics_port(ray_served):
    """In the Ray graph the engine runs in the Generator replica: its figures come out of Ray's metrics agent
    (ray_ prefix, tagged with the deployment), not the gateway's /metrics."""
    import re
    import time

    import httpx

    client = openai.OpenAI(
        base_url=f"{ray_served.base}/v1", api_key=ray_served.key, max_retries=0, timeout=120
    )
    resp = client.chat.completions.create(
        model=MODEL, messages=user("How long does a transfer to another bank take?"), max_tokens=9, seed=11
    )
    assert resp.usage.completion_tokens > 0
    pattern = re.compile(
        r'^ray_finserve_engine_generated_tokens_total\{[^}]*deployment="Generator"[^}]*engine="transformers"'
        r"[^}]*\} ([0-9.e+]+)$",
        re.M,
    )
    deadline, found = time.monotonic() + 120, None
    while (
        time.monotonic() < deadline
    ):  # the replica exports every 5 s; Ray's agent collects on its own period
        body = httpx.get(f"http://127.0.0.1:{ray_served.ray_metrics_port}/metrics", timeout=10).text
        found = pattern.search(body)
        if found and float(found.group(1)) > 0:
            break
        time.sleep(3)
    assert found and float(found.group(1)) > 0, (
        "no ray_finserve_engine_generated_tokens_total from the Generator: "
        + "\n".join(line for line in body.splitlines() if "finserve" in line)[:3000]
    )
    assert re.search(r'^ray_finserve_engine_slots\{[^}]*deployment="Generator"', body, re.M)
