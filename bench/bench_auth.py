"""Per-request cost of authentication and authorisation, in-process: one API key, one legacy key and
JWTs (RS256, ES256) against a cached JWKS, each verified and then authorised (tenant and scope) as the
ingress does for every request. No network: the JWKS is a file read once (a JWKS URL is fetched once
and cached the same way). Writes bench/results/auth.json.

    python -m bench.bench_auth [--iterations 2000] [--out bench/results/auth.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, percentiles, write_result

PACKAGES = ("PyJWT", "cryptography")
ISSUER, AUDIENCE = "https://idp.bench.example", "finserve"


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted({f for f in ("avx2", "avx512f", "sha_ni", "aes", "adx", "bmi2") if f" {f}" in text})


def _signing_keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
    }


def _setup(workdir: Path) -> tuple[Any, dict[str, str]]:
    import jwt
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    from finserve.serving.access import AuthConfig, Authenticator, JwtConfig
    from finserve.serving.access.keys import KeysFile, new_key, write_keys

    keys, records = KeysFile(), []
    for i in range(1000):  # a realistic file: lookup is by id, so its size must not matter
        key, record = new_key(f"client-{i}", ["retail"], ["infer"])
        keys.keys.append(record)
        records.append(key)
    write_keys(workdir / "keys.json", keys)
    signers = _signing_keys()
    jwks = []
    for alg, private in signers.items():
        algo = RSAAlgorithm if alg == "RS256" else ECAlgorithm
        jwks.append({**json.loads(algo.to_jwk(private.public_key())), "kid": alg, "alg": alg, "use": "sig"})
    (workdir / "jwks.json").write_text(json.dumps({"keys": jwks}))
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc-retail",
        "iat": now,
        "exp": now + 3600,
        "tenants": ["retail"],
        "scope": "infer",
    }
    os.environ["FINSERVE_API_KEY_BENCH"] = "legacy-" + "x" * 40
    auth = Authenticator(
        AuthConfig(
            keys_file=str(workdir / "keys.json"),
            jwt=JwtConfig(jwks_file=str(workdir / "jwks.json"), issuer=ISSUER, audience=AUDIENCE),
        ),
        "default",
        legacy_key_env="FINSERVE_API_KEY_BENCH",
    )
    creds = {"api_key": records[500], "legacy_key": os.environ["FINSERVE_API_KEY_BENCH"]}
    for alg, private in signers.items():
        creds[f"jwt_{alg.lower()}"] = jwt.encode(claims, private, algorithm=alg, headers={"kid": alg})
    return auth, creds


def run(iterations: int) -> dict[str, Any]:
    from finserve.serving.access import INFER, authorize

    with tempfile.TemporaryDirectory() as tmp:
        auth, creds = _setup(Path(tmp))
        out: dict[str, Any] = {}
        for name, token in creds.items():
            header = f"Bearer {token}"
            for _ in range(50):  # warm: JWKS read, caches
                auth.authenticate(header)
            wall, cpu = [], []
            for _ in range(iterations):
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                principal = auth.authenticate(header)
                authorize(
                    principal,
                    auth_on=True,
                    scope=INFER,
                    requested_tenant=None,
                    default_tenant="default",
                    adapter_override=None,
                )
                cpu.append((time.thread_time_ns() - c0) / 1e6)
                wall.append((time.perf_counter_ns() - t0) / 1e6)
            out[name] = {"wall": percentiles(wall), "cpu": percentiles(cpu)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = run(args.iterations)
    info = machine(PACKAGES) | {"cpu_flags": _cpu_flags()}
    path = write_result(
        "auth",
        {"machine": info, "iterations": args.iterations, "target_p95_ms": 1.0, "results": results},
        args.out,
    )
    for name, r in results.items():
        print(
            f"{name:12s} wall p50 {r['wall']['p50_ms']:.3f} p95 {r['wall']['p95_ms']:.3f} ms | "
            f"cpu p50 {r['cpu']['p50_ms']:.3f} p95 {r['cpu']['p95_ms']:.3f} ms"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
