// Owns the scopes a credential can hold, declared once: a new resource adds its scopes here.
export const SCOPES = ['admin', 'items:read', 'items:write'] as const;

export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}
