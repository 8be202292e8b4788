// Owns reusable zod building blocks: bounded text without NUL bytes, declared scopes, response timestamps.
import { z } from 'zod';
import { SCOPES } from '../scopes.ts';

/** Bounded text; NUL bytes are rejected (PostgreSQL text cannot store them, and they hide in logs). */
export const text = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !s.includes('\u0000'), 'must not contain NUL bytes');

/** One of the scopes declared in src/scopes.ts: an unknown one is a 400, never a key that grants nothing. */
export const Scope = z.enum(SCOPES);

export const Scopes = z.array(Scope).max(50);

/**
 * A timestamp in a response, as Date.toISOString() writes it. Documented as date-time; not re-checked
 * when serialized (z.iso.datetime() would run its pattern on every timestamp of every page).
 */
export const timestamp = z.string().max(32).meta({ format: 'date-time', description: 'RFC 3339, UTC.' });
