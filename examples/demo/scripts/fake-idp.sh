#!/bin/sh
# A stand-in identity provider for trying PORTCULLIS_JWKS_URL by hand
# (runbooks: service-degradation.md, signature-and-key-rotation.md), with
# openssl and python3 only. Not for production: it signs whatever you ask.
#
#   fake-idp.sh key  KEY.pem                       new RSA-2048 private key
#   fake-idp.sh jwk  KEY.pem KID                   its public JWK (use: sig)
#   fake-idp.sh jwks KEY.pem:KID [KEY.pem:KID…]    a JWK set, on stdout
#   fake-idp.sh token KEY.pem KID SUB "SCOPE…"     an RS256 access token
#
# Tokens name ISS (default https://idp.example.test/) and AUD (default
# portcullis-demo-api) and live TTL seconds (default 300). Serve the set
# with e.g. `python3 -m http.server 9100 --bind 127.0.0.1`.
set -eu

b64url() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode())'; }

jwk() {
    n=$(openssl rsa -in "$1" -noout -modulus 2>/dev/null | cut -d= -f2 | python3 -c 'import sys,binascii,base64; print(base64.urlsafe_b64encode(binascii.unhexlify(sys.stdin.read().strip())).rstrip(b"=").decode())')
    printf '{"kty":"RSA","alg":"RS256","use":"sig","kid":"%s","n":"%s","e":"AQAB"}' "$2" "$n"
}

case "${1:-}" in
key)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" 2>/dev/null
    ;;
jwk)
    jwk "$2" "$3"; echo
    ;;
jwks)
    shift
    printf '{"keys":['
    sep=
    for pair in "$@"; do
        printf '%s' "$sep"; jwk "${pair%%:*}" "${pair#*:}"; sep=,
    done
    printf ']}\n'
    ;;
token)
    now=$(date +%s)
    header=$(printf '{"alg":"RS256","typ":"at+jwt","kid":"%s"}' "$3" | b64url)
    claims=$(printf '{"iss":"%s","aud":"%s","sub":"%s","scope":"%s","iat":%s,"exp":%s,"jti":"%s"}' \
        "${ISS:-https://idp.example.test/}" "${AUD:-portcullis-demo-api}" "$4" "$5" \
        "$now" "$((now + ${TTL:-300}))" "$(openssl rand -hex 8)" | b64url)
    sig=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$2" | b64url)
    printf '%s.%s.%s\n' "$header" "$claims" "$sig"
    ;;
*)
    sed -n '2,13p' "$0" | cut -c3-
    exit 2
    ;;
esac
