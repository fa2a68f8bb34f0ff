"""Make keys and tokens for the gateway's JWT tests with an independent JOSE library (PyJWT).

usage: make_tokens.py OUT_DIR LEEWAY_S

Writes public keys (PEM files, a JWKS file, and JWKS documents for the rotation test) into
OUT_DIR and prints a JSON object {name: token} on stdout.
"""
import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

out_dir, leeway = sys.argv[1], int(sys.argv[2])
now = int(time.time())
SECRET = b"an-hmac-secret-for-the-gateway-tests-that-is-64-bytes-long-ok!!"
ISS, AUD = "https://issuer.test", "api"


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write(name, data):
    with open(f"{out_dir}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(key, kid, alg):
    doc = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    doc.update(kid=kid, use="sig")
    return doc


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec256 = ec.generate_private_key(ec.SECP256R1())
ec384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)

write("rsa.pem", pem_public(rsa_key))
write("ec256.pem", pem_public(ec256))
write("ed.pem", pem_public(ed))
write("jwks.json", json.dumps({"keys": [jwk(ec384, "ec384", "ES384")]}))
write("hs.secret", SECRET + b"\n")
# Rotation: the IdP first publishes key "a" (the RSA key), later "a" and "b".
write("jwks-a.json", json.dumps({"keys": [jwk(rsa_key, "a", "RS256")]}))
write("jwks-ab.json", json.dumps({"keys": [jwk(rsa_key, "a", "RS256"), jwk(rotated, "b", "RS256")]}))

claims = {"sub": "alice", "iss": ISS, "aud": AUD, "exp": now + 600, "groups": ["admin"]}
signing = {
    "HS256": (SECRET, "hs"), "HS384": (SECRET, "hs"), "HS512": (SECRET, "hs"),
    "RS256": (rsa_key, "rsa"), "RS384": (rsa_key, "rsa"), "RS512": (rsa_key, "rsa"),
    "PS256": (rsa_key, "rsa"), "PS384": (rsa_key, "rsa"), "PS512": (rsa_key, "rsa"),
    "ES256": (ec256, "ec256"), "ES384": (ec384, "ec384"), "EdDSA": (ed, "ed"),
}
tokens = {}
for alg, (key, kid) in signing.items():
    tokens[f"good-{alg}"] = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def rs256(payload, kid="rsa", key=rsa_key):
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def unsigned(header, payload, signer=None):
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    sig = signer(signing_input.encode()) if signer else b""
    return signing_input + "." + b64(sig)


rsa_pem = pem_public(rsa_key)
tokens["attack-alg-none"] = unsigned({"alg": "none", "typ": "JWT"}, claims)
tokens["attack-hs256-with-rsa-public-key"] = unsigned(
    {"alg": "HS256", "typ": "JWT"}, claims,
    lambda m: hmac.new(rsa_pem, m, hashlib.sha256).digest())
tokens["attack-hs256-with-rsa-public-key-kid"] = unsigned(
    {"alg": "HS256", "typ": "JWT", "kid": "rsa"}, claims,
    lambda m: hmac.new(rsa_pem, m, hashlib.sha256).digest())
tokens["attack-expired"] = rs256({**claims, "exp": now - leeway - 1})
tokens["within-leeway"] = rs256({**claims, "exp": now - leeway + 60})
tokens["attack-exp-string"] = rs256({**claims, "exp": str(now + 600)})
tokens["attack-no-exp"] = rs256({k: v for k, v in claims.items() if k != "exp"})
tokens["attack-future-nbf"] = rs256({**claims, "nbf": now + 3600})
tokens["attack-wrong-aud"] = rs256({**claims, "aud": "other"})
tokens["attack-missing-aud"] = rs256({k: v for k, v in claims.items() if k != "aud"})
tokens["attack-wrong-iss"] = rs256({**claims, "iss": "https://evil.test"})
tokens["attack-unknown-kid"] = rs256(claims, kid="nope", key=stranger)
good = tokens["good-RS256"].split(".")
forged = dict(claims, sub="admin")
tokens["attack-tampered-payload"] = ".".join([good[0], b64(json.dumps(forged).encode()), good[2]])
# Rotation test tokens.
tokens["rotation-a"] = rs256(claims, kid="a")
tokens["rotation-b"] = rs256(claims, kid="b", key=rotated)
for i in range(20):
    tokens[f"rotation-unknown-{i}"] = rs256(claims, kid=f"unknown-{i}", key=stranger)
print(json.dumps(tokens))
