#!/usr/bin/env python3
"""Write the token and claims seeds under fuzz/seeds/ from the keys in tests/fixtures/keys.

The tokens are valid at the fuzz target's fixed clock (1_800_000_000 s) for the providers the
token target configures. Needs the `cryptography` package. ES256 signatures are randomized,
so each run writes different ES256 tokens.
"""

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

FUZZ_DIR = Path(__file__).resolve().parent
KEYS_DIR = FUZZ_DIR.parent / "tests" / "fixtures" / "keys"

NOW = 1_800_000_000
IDP_ISSUER = "http://127.0.0.1:9000/api/v2/iauths_system/oauth2"
LOCAL_ISSUER = "https://local.example/oauth2"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def load_private_key(kid: str):
    pem = (KEYS_DIR / f"{kid}.key.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def sign(kid: str, alg: str, signing_input: bytes) -> bytes:
    key = load_private_key(kid)
    if alg == "RS256":
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        # JWS wants the fixed-width r || s form (RFC 7518 section 3.4), not DER.
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise ValueError(f"unsupported alg {alg}")


def mint(kid: str, alg: str, header_extra: dict, claims: dict) -> str:
    header = {"alg": alg, "kid": kid, **header_extra}
    signing_input = f"{b64url(encode_json(header))}.{b64url(encode_json(claims))}"
    signature = sign(kid, alg, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def idp_claims(**overrides) -> dict:
    claims = {
        "iss": IDP_ISSUER,
        "aud": "api://model-studio",
        "sub": "app_ci",
        "client_id": "app_ci",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
        "jti": "seed-1",
        "scope": "model.invoke model.list",
    }
    claims.update(overrides)
    return claims


def local_claims(**overrides) -> dict:
    return idp_claims(
        iss=LOCAL_ISSUER,
        aud=["api://other", "api://model-studio"],
        scope=None,
        scp=["model.invoke", "api://other|model.list"],
        **overrides,
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    token_dir = FUZZ_DIR / "seeds" / "token"
    claims_dir = FUZZ_DIR / "seeds" / "claims"

    payloads = {
        "rs256-valid": idp_claims(),
        "es256-valid": {k: v for k, v in local_claims().items() if v is not None},
        "rs256-expired": idp_claims(exp=NOW - 120),
        "rs256-no-scope": {k: v for k, v in idp_claims(scope=None).items() if v is not None},
        "es256-lifetime-too-long": {k: v for k, v in local_claims(exp=NOW + 200_000).items() if v is not None},
    }
    tokens = {
        "rs256-valid": mint("idp-rs256-1", "RS256", {"typ": "at+jwt"}, payloads["rs256-valid"]),
        "es256-valid": mint("local-es256-1", "ES256", {"typ": "at+jwt"}, payloads["es256-valid"]),
        "rs256-expired": mint("idp-rs256-1", "RS256", {}, payloads["rs256-expired"]),
        "rs256-no-scope": mint("idp-rs256-1", "RS256", {}, payloads["rs256-no-scope"]),
        "es256-lifetime-too-long": mint(
            "local-es256-1", "ES256", {"typ": "application/at+jwt"}, payloads["es256-lifetime-too-long"]
        ),
        # A key the configuration does not publish: rejected as key_not_found.
        "rs256-unknown-kid": mint("other-rs256-1", "RS256", {}, idp_claims()),
    }
    # An unsigned token with alg none, which must be rejected before any key lookup.
    unsigned_header = b64url(encode_json({"alg": "none", "typ": "JWT"}))
    tokens["alg-none"] = f"{unsigned_header}.{b64url(encode_json(idp_claims()))}."

    for name, token in tokens.items():
        write(token_dir / name, f"Bearer {token}")
    write(token_dir / "two-headers", f"Bearer {tokens['rs256-valid']}\nbearer   {tokens['es256-valid']}")
    write(token_dir / "basic-scheme", "Basic dXNlcjpwYXNzd29yZA==")

    for name, claims in payloads.items():
        write(claims_dir / f"{name}.json", json.dumps(claims, indent=1))


if __name__ == "__main__":
    main()
