// Owns the API key format `<prefix>_<id>_<secret>`: generation, parsing, hashing, constant-time checking.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface GeneratedApiKey {
  id: string;
  /** The whole key, shown to its owner once and never stored. */
  key: string;
  secretHash: Buffer;
}

export interface ParsedApiKey {
  id: string;
  secret: string;
}

/** 16 hex characters of public id; 32 random bytes (256 bits) of secret, base64url. */
const ID_BYTES = 8;
const SECRET_BYTES = 32;

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export function generateApiKey(prefix: string): GeneratedApiKey {
  const id = randomBytes(ID_BYTES).toString('hex');
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { id, key: `${prefix}_${id}_${secret}`, secretHash: hashSecret(secret) };
}

export function apiKeyPattern(prefix: string): RegExp {
  return new RegExp(`^${prefix}_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$`);
}

export function parseApiKey(pattern: RegExp, value: string): ParsedApiKey | null {
  const m = pattern.exec(value);
  return m ? { id: m[1] as string, secret: m[2] as string } : null;
}

/** A hash no secret produces: unknown ids are compared against it, so both paths cost the same. */
const DUMMY_HASH = hashSecret(randomBytes(SECRET_BYTES).toString('base64url'));

/** Constant-time: the same work whether the key id is unknown or the secret is wrong. */
export function secretMatches(secret: string, storedHash: Buffer | undefined): boolean {
  const presented = hashSecret(secret);
  const equal = timingSafeEqual(presented, storedHash ?? DUMMY_HASH);
  return equal && storedHash !== undefined;
}
