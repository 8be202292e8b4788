// Owns the Principal: who a request acts as, frozen so every request with one credential shares one object.

export interface Principal {
  subject: string;
  /** Strings, not `Scope`s: a token minted before a scope was retired still carries it. */
  scopes: readonly string[];
  kind: 'api_key' | 'jwt';
  /** The API key used, or the one a token was minted from. */
  keyId: string | null;
  /** jti of the token used, for JWTs. */
  tokenId: string | null;
}

export function freezePrincipal(principal: Principal): Principal {
  return Object.freeze({ ...principal, scopes: Object.freeze([...principal.scopes]) });
}
