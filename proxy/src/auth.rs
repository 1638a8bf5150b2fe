//! JWT verification (HS256 dev secret, RS256/ES256 via JWKS) and dev token minting.
