"""Who may call, as whom, and what: the ingress both transports share (identity, tenancy, scopes).

- principal.py: the typed caller and the scopes;
- policy.py: pure decisions (authorize, required_scope for a path);
- keys.py / tokens.py / authenticator.py: API keys, JWTs and the legacy key -> Principal;
- ingress.py: headers -> RequestContext for REST and gRPC alike, and the audit of a refusal (imported
  from there: it needs the pipeline, which needs this package's config);
- http.py: the ASGI middleware closing non-audited HTTP paths.
"""

from .authenticator import Authenticator, keys_path
from .config import AuthConfig, JwtConfig
from .policy import Decision, authorize, require_scope, required_scope, rpc_scope
from .principal import ADAPTER_OVERRIDE, ADMIN, INFER, SCOPES, Principal

__all__ = [
    "ADAPTER_OVERRIDE",
    "ADMIN",
    "INFER",
    "SCOPES",
    "AuthConfig",
    "Authenticator",
    "Decision",
    "JwtConfig",
    "Principal",
    "authorize",
    "keys_path",
    "require_scope",
    "required_scope",
    "rpc_scope",
]
