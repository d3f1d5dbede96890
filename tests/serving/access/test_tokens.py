"""JWT bearer tokens: RS256 and ES256 against a JWKS file (reloaded on change) or URL (cached), issuer,
audience, expiry with bounded leeway, and tenants/scopes from configurable claims."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from jwks_util import AUDIENCE, ISSUER, ec_key, rsa_key, write_jwks

from finserve.serving.access import JwtConfig
from finserve.serving.access.tokens import JwtVerifier
from finserve.serving.errors import Unauthorized

JWKS_PORT = 18101  # this helper's port range


@pytest.fixture(scope="module")
def keys():
    return rsa_key(), ec_key()


def verifier(path, **kw) -> JwtVerifier:
    return JwtVerifier(JwtConfig(jwks_file=str(path), issuer=ISSUER, audience=AUDIENCE, **kw))


@pytest.mark.parametrize("which", [0, 1], ids=["RS256", "ES256"])
def test_valid_token_gives_principal_from_claims(tmp_path, keys, which):
    v = verifier(write_jwks(tmp_path / "jwks.json", *keys))
    p = v.verify(keys[which].token({"tenants": ["retail", "business"], "scope": "infer adapter:override"}))
    assert (p.id, p.kind) == ("jwt:svc-retail-app", "jwt")
    assert p.tenants == ("retail", "business") and p.scopes == {"infer", "adapter:override"}


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"iss": "https://evil.example"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"exp": int(time.time()) - 120}, "expired"),  # past the 30 s leeway
        ({"exp": None}, "exp"),
    ],
)
def test_bad_claims_are_401(tmp_path, keys, overrides, needle):
    v = verifier(write_jwks(tmp_path / "jwks.json", *keys))
    with pytest.raises(Unauthorized) as err:
        v.verify(keys[0].token(**overrides))
    assert needle in err.value.message and 'error="invalid_token"' in err.value.challenge


def test_leeway_accepts_small_clock_skew_only(tmp_path, keys):
    v = verifier(write_jwks(tmp_path / "jwks.json", *keys), leeway_s=60)
    assert v.verify(keys[0].token(exp=int(time.time()) - 10)).id == "jwt:svc-retail-app"
    with pytest.raises(Unauthorized, match="expired"):
        v.verify(keys[0].token(exp=int(time.time()) - 600))


def test_token_signed_by_a_key_not_in_the_jwks_is_refused(tmp_path, keys):
    v = verifier(write_jwks(tmp_path / "jwks.json", keys[0]))
    stranger = rsa_key("rsa-1")  # same kid, other key: the signature fails
    with pytest.raises(Unauthorized, match="invalid token"):
        v.verify(stranger.token())
    with pytest.raises(Unauthorized, match="kid"):
        v.verify(ec_key("unknown").token())


def test_hs256_and_none_are_refused(tmp_path, keys):
    import jwt

    v = verifier(write_jwks(tmp_path / "jwks.json", *keys))
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        "s" * 32,
        algorithm="HS256",
        headers={"kid": "rsa-1"},
    )
    with pytest.raises(Unauthorized):
        v.verify(forged)
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        None,
        algorithm="none",
        headers={"kid": "rsa-1"},
    )
    with pytest.raises(Unauthorized):
        v.verify(unsigned)


def test_jwks_file_is_reloaded_when_it_changes(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", keys[0])
    v = verifier(path)
    with pytest.raises(Unauthorized, match="kid"):
        v.verify(keys[1].token())
    write_jwks(path, *keys)  # key rotation: the EC key is added
    v._keys._checked = float("-inf")
    assert v.verify(keys[1].token()).kind == "jwt"


def test_claims_mapping_is_configurable_and_personal_subjects_are_pseudonymised(tmp_path, keys):
    v = verifier(
        write_jwks(tmp_path / "jwks.json", *keys),
        principal_claim="client_id",
        tenants_claim="https://finserve/tenants",
        scope_claim="scp",
    )
    p = v.verify(
        keys[0].token(
            {
                "client_id": "jane.doe@bank.example",
                "https://finserve/tenants": "retail",
                "scp": ["infer"],
                "tenants": ["ignored"],
            }
        )
    )
    assert p.id.startswith("jwt:u_") and "jane" not in p.id
    assert p.tenants == ("retail",) and p.scopes == {"infer"}
    # A "*" tenant or a malformed one from a token is dropped: any-tenant is for keys made by hand.
    p = v.verify(
        keys[0].token(
            {"client_id": "app", "https://finserve/tenants": ["*", "bad tenant", "retail"], "scp": "infer"}
        )
    )
    assert p.tenants == ("retail",)


def test_jwks_url_is_fetched_once_and_cached(tmp_path, keys):
    body = write_jwks(tmp_path / "jwks.json", *keys).read_bytes()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", JWKS_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        v = JwtVerifier(
            JwtConfig(jwks_url=f"http://127.0.0.1:{JWKS_PORT}/jwks", issuer=ISSUER, audience=AUDIENCE)
        )
        for key in (*keys, *keys):
            assert v.verify(key.token()).id == "jwt:svc-retail-app"
        assert hits == ["/jwks"]
        # Unknown kids refetch the set (a rotation) once, then not again until refetch_s has passed.
        for _ in range(3):
            with pytest.raises(Unauthorized, match="kid"):
                v.verify(rsa_key("rotated-away").token())
        assert hits == ["/jwks", "/jwks"]
    finally:
        server.shutdown()
        server.server_close()


def test_config_needs_exactly_one_jwks_source():
    with pytest.raises(ValueError, match="exactly one"):
        JwtConfig(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="exactly one"):
        JwtConfig(jwks_file="a", jwks_url="http://b", issuer=ISSUER, audience=AUDIENCE)
