"""Signing keys and tokens for tests: RSA and EC keys made here with `cryptography`, a JWKS of their
public halves, and tokens signed with PyJWT (what a bank's identity provider would issue)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.bank.example/realms/finserve"
AUDIENCE = "finserve"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict:
        public = self.private.public_key()
        algo = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        out = json.loads(algo.to_jwk(public))
        return {**out, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def token(self, claims: dict | None = None, *, ttl_s: int = 300, **overrides: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "svc-retail-app",
            "iat": now,
            "exp": now + ttl_s,
            "tenants": ["retail"],
            "scope": "infer",
            **(claims or {}),
        }
        for k, v in overrides.items():
            if v is None:
                body.pop(k, None)
            else:
                body[k] = v
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": self.kid})


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    path.write_text(json.dumps({"keys": [k.jwk() for k in keys]}), encoding="utf-8")
    return path
