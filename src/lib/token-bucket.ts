// Owns the token bucket math (GCRA): one timestamp per key, capacity B, refill R tokens per second.

export interface BucketParams {
  /** Capacity: how many requests an idle client may send at once. */
  burst: number;
  /** Milliseconds between two tokens (1 / rate). */
  intervalMs: number;
}

export interface Decision {
  allowed: boolean;
  /** Tokens left after this request. */
  remaining: number;
  /** Allowed: ms until the bucket is full again. Limited: ms until the next token (never earlier). */
  ttlMs: number;
  /** New theoretical arrival time to store (allowed only). */
  tat: number;
}

/** Capacity B refilled at `max` per `windowMs`: one token every windowMs / max. */
export function bucketParams(max: number, windowMs: number, burst: number): BucketParams {
  return { burst, intervalMs: windowMs / max };
}

/**
 * GCRA: the stored value is the time at which the bucket would be full again (TAT). A request is
 * allowed when adding one interval keeps TAT within `burst` intervals of now. Mirrors the Lua script.
 */
export function decide(storedTat: number | undefined, now: number, p: BucketParams): Decision {
  const tat = storedTat === undefined || storedTat < now ? now : storedTat;
  const newTat = tat + p.intervalMs;
  const allowAt = newTat - p.burst * p.intervalMs;
  if (now < allowAt) return { allowed: false, remaining: 0, ttlMs: Math.ceil(allowAt - now), tat };
  return {
    allowed: true,
    remaining: Math.floor((p.burst * p.intervalMs - (newTat - now)) / p.intervalMs),
    ttlMs: Math.ceil(newTat - now),
    tat: newTat,
  };
}

/** The ioredis command name the limiter defines for GCRA_LUA. */
export const GCRA_COMMAND = 'gcra';

/**
 * The same decision, atomically in Redis: one script call per request on the client's one key, the
 * shape Redis Cluster needs. KEYS[1] is the bucket; ARGV is interval (ms) and burst. The clock is
 * Redis' own TIME, one for every instance. Returns {allowed (1/0), remaining, ttl ms}. The key
 * always has a TTL: it lives only until the bucket would be full again.
 */
export const GCRA_LUA = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
-- Stored as integer microseconds: Redis keeps it int-encoded (88 B per key instead of 120 B as text).
local stored = tonumber(redis.call('GET', KEYS[1]))
local tat = stored and stored / 1000
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now)}
end
local ttl = math.ceil(new_tat - now)
redis.call('SET', KEYS[1], string.format('%d', math.floor(new_tat * 1000)), 'PX', ttl)
return {1, math.floor((burst * interval - (new_tat - now)) / interval), ttl}
`;
