// Owns reusable zod building blocks for request schemas: bounded text without NUL bytes, declared scopes.
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
