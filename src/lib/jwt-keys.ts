// Owns JWT key material: the HS256 secret or RS256/ES256 key files, their key ids and the JWKS document.
import { createHash, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Config } from '../config.ts';

export interface JwtKey {
  kid: string;
  algorithm: Config['JWT_ALGORITHM'];
  /** HS256 secret or PEM public key. */
  verifyKey: string;
  /** HS256 secret or PEM private key; absent for verification-only (retired) keys. */
  signKey?: string;
  jwk?: JsonWebKey;
}

/** RFC 7638 thumbprint: a key id derived from the key itself, stable across restarts and replicas. */
export function jwkThumbprint(jwk: JsonWebKey): string {
  const members =
    jwk.kty === 'EC'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : jwk.kty === 'RSA'
        ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
        : null;
  if (members === null) throw new Error(`unsupported key type ${String(jwk.kty)}`);
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function checkKeyType(key: KeyObject, algorithm: Config['JWT_ALGORITHM'], file: string) {
  const expected = algorithm === 'RS256' ? 'rsa' : 'ec';
  if (key.asymmetricKeyType !== expected) throw new Error(`${file}: ${algorithm} needs an ${expected} key`);
  if (algorithm === 'ES256' && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error(`${file}: ES256 needs a P-256 key`);
}

/**
 * The signing key comes first. HS256: JWT_SECRET signs, JWT_VERIFY_SECRETS only verify. Asymmetric: JWT_PRIVATE_KEY_FILE signs (its public half verifies), and
 * every JWT_PUBLIC_KEY_FILES entry verifies too, so tokens of a retired key stay valid while they live.
 */
export function loadJwtKeys(config: Config): JwtKey[] {
  const algorithm = config.JWT_ALGORITHM;
  if (algorithm === 'HS256') {
    const secret = config.JWT_SECRET;
    if (secret === undefined) throw new Error('JWT_SECRET is not set');
    // A short digest of the secret: identifies it for rotation without revealing anything usable.
    const kidOf = (s: string) => `hs-${createHash('sha256').update(s).digest('base64url').slice(0, 8)}`;
    const keys: JwtKey[] = [{ kid: kidOf(secret), algorithm, verifyKey: secret, signKey: secret }];
    // Verify-only secrets (rotation): tokens name their secret by kid.
    for (const extra of config.JWT_VERIFY_SECRETS)
      if (!keys.some((k) => k.verifyKey === extra))
        keys.push({ kid: kidOf(extra), algorithm, verifyKey: extra });
    return keys;
  }
  const keys: JwtKey[] = [];
  const seen = new Set<string>();
  if (config.JWT_PRIVATE_KEY_FILE) {
    const pem = readFileSync(config.JWT_PRIVATE_KEY_FILE, 'utf8');
    const publicKey = createPublicKey(createPrivateKey(pem));
    checkKeyType(publicKey, algorithm, config.JWT_PRIVATE_KEY_FILE);
    const jwk = publicKey.export({ format: 'jwk' });
    const kid = jwkThumbprint(jwk);
    keys.push({
      kid,
      algorithm,
      signKey: pem,
      verifyKey: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      jwk,
    });
    seen.add(kid);
  }
  for (const file of config.JWT_PUBLIC_KEY_FILES) {
    const publicKey = createPublicKey(readFileSync(file, 'utf8'));
    checkKeyType(publicKey, algorithm, file);
    const jwk = publicKey.export({ format: 'jwk' });
    const kid = jwkThumbprint(jwk);
    if (seen.has(kid)) continue;
    seen.add(kid);
    keys.push({
      kid,
      algorithm,
      verifyKey: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      jwk,
    });
  }
  return keys;
}

export function jwksDocument(keys: JwtKey[]): { keys: Record<string, unknown>[] } {
  return {
    keys: keys.filter((k) => k.jwk).map((k) => ({ ...k.jwk, kid: k.kid, alg: k.algorithm, use: 'sig' })),
  };
}
