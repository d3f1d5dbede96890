"""A generator stage that records every request before passing it on (a spy around the real one, not a fake)."""

from __future__ import annotations

from finserve.serving.inference.types import GenerationRequest


class GeneratorSpy:
    def __init__(self, inner) -> None:  # noqa: ANN001 - any GeneratorStage
        self.inner, self.requests = inner, []

    async def generate(self, request: GenerationRequest):  # noqa: ANN201
        self.requests.append(request)
        return await self.inner.generate(request)

    def stream(self, request: GenerationRequest):  # noqa: ANN201
        self.requests.append(request)
        return self.inner.stream(request)
