"""An engine that is any OpenAI-compatible chat-completions endpoint, over httpx (async).

It receives exactly what the local engines receive: the pipeline's GenerationRequest, whose messages are
already masked by the PII guard (input, context) and whose output the pipeline guards again. Adapters map
to upstream model names (``models``); an unmapped adapter is refused, never served by another model.
Streams are read as server-sent events. Every failure is a ProviderUnavailable whose message carries no
upstream body (it may quote the prompt back).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from finserve.contracts import AdapterNotFound, AdapterRef

from .config import GeneratorConfig, OpenAIOptions
from .errors import EngineNotReady, ProviderUnavailable
from .types import GenerationRequest, GenerationResult, StreamChunk, Usage

log = logging.getLogger(__name__)


def read_api_key(options: OpenAIOptions) -> str | None:
    """The key from the env var or the Secret file named in the options (file wins when both are set)."""
    if options.api_key_file:
        return Path(options.api_key_file).read_text(encoding="utf-8").strip() or None
    if options.api_key_env:
        return os.environ.get(options.api_key_env) or None
    return None


def upstream_model(options: OpenAIOptions, ref: AdapterRef) -> str:
    model = options.models.get(str(ref), options.default_model)
    if model is None:
        raise AdapterNotFound(f"no upstream model for adapter {ref}")
    return model


def request_body(req: GenerationRequest, model: str, max_new_tokens: int, stream: bool) -> dict:
    body: dict = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in req.messages],
        "max_tokens": req.max_tokens or max_new_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stream": stream,
    }
    if req.stop:
        body["stop"] = req.stop
    if req.seed is not None:
        body["seed"] = req.seed
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _finish(reason: object) -> str:
    return "length" if reason == "length" else "stop"


class OpenAIEngine:
    """The Engine protocol over an OpenAI-compatible HTTP endpoint."""

    def __init__(self, options: OpenAIOptions, config: GeneratorConfig, name: str = "openai") -> None:
        self.options = options
        self.config = config
        self.name = name
        self._client: httpx.AsyncClient | None = None
        self._in_flight = 0

    async def start(self) -> None:
        key = read_api_key(self.options)
        o = self.options
        self._client = httpx.AsyncClient(
            base_url=o.base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=httpx.Timeout(o.read_timeout_s, connect=o.connect_timeout_s),
            limits=httpx.Limits(max_connections=o.max_connections),
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def ready(self) -> bool:
        return self._client is not None

    def queue_depth(self) -> int:
        return self._in_flight

    def adapters(self) -> list[AdapterRef]:
        return [AdapterRef.parse(r) for r in self.options.models]

    async def ensure_adapter(self, ref: AdapterRef) -> None:
        upstream_model(self.options, ref)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineNotReady(f"provider {self.name} not started")
        return self._client

    async def generate(self, req: GenerationRequest) -> GenerationResult:
        body = request_body(req, upstream_model(self.options, req.adapter), self.config.max_new_tokens, False)
        self._in_flight += 1
        try:
            resp = await self._http().post("chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"provider {self.name}: {type(exc).__name__}") from None
        finally:
            self._in_flight -= 1
        if resp.status_code != 200:
            raise ProviderUnavailable(f"provider {self.name}: HTTP {resp.status_code}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            text = choice["message"].get("content") or ""
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            return GenerationResult(
                text=text,
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                cached_prompt_tokens=cached,
                finish_reason=_finish(choice.get("finish_reason")),
                adapter=req.adapter,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderUnavailable(f"provider {self.name}: malformed response") from None

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        body = request_body(req, upstream_model(self.options, req.adapter), self.config.max_new_tokens, True)
        finish, usage, pieces = None, None, 0
        self._in_flight += 1
        try:
            async with self._http().stream("POST", "chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    raise ProviderUnavailable(f"provider {self.name}: HTTP {resp.status_code}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise ProviderUnavailable(f"provider {self.name}: error event mid-stream")
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or ():
                        delta = (choice.get("delta") or {}).get("content") or ""
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if delta:
                            pieces += 1
                            yield StreamChunk(delta=delta)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"provider {self.name}: {type(exc).__name__}") from None
        except (ValueError, TypeError, AttributeError):
            raise ProviderUnavailable(f"provider {self.name}: malformed stream") from None
        finally:
            self._in_flight -= 1
        if finish is None:
            # The upstream closed before saying how the answer ended: a cut-off answer, not a whole one.
            raise ProviderUnavailable(f"provider {self.name}: stream ended without a finish reason")
        u = usage or {}
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        yield StreamChunk(
            finish_reason=_finish(finish),
            usage=Usage(
                prompt_tokens=u.get("prompt_tokens", 0),
                completion_tokens=u.get("completion_tokens", pieces),
                cached_tokens=cached,
            ),
        )
