"""The OpenAI API surface beyond chat: the request rules SDKs and frameworks run into
(content-part arrays, the developer role, refused tools / logprobs / n), /v1/completions and
/v1/embeddings. All of it goes through the same guarded, audited pipeline as chat."""
