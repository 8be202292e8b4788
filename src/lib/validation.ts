// Owns reusable zod building blocks for request schemas: bounded text without NUL bytes, scopes.
import { z } from 'zod';

/** Bounded text; NUL bytes are rejected (PostgreSQL text cannot store them, and they hide in logs). */
export const text = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !s.includes('\u0000'), 'must not contain NUL bytes');

/** `admin`, `items:read`: lowercase words, optionally `resource:action`. */
export const Scope = z
  .string()
  .max(64)
  .regex(/^[a-z][a-z0-9_-]*(:[a-z][a-z0-9_-]*)?$/, 'must look like resource:action');

export const Scopes = z.array(Scope).max(50);
