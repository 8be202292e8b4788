// Owns appending a hook to one route from an onRoute hook (a route's hook option is absent, one function or an array).
import type { RouteOptions } from 'fastify';

type HookName = 'onRequest' | 'preHandler' | 'onSend' | 'onResponse';
type HookOf<K extends HookName> = Extract<NonNullable<RouteOptions[K]>, readonly unknown[]>[number];

/** Runs `hook` after the route's own hooks of that kind: bound per route, so no per-request lookup. */
export function appendRouteHook<K extends HookName>(route: RouteOptions, name: K, hook: HookOf<K>): void {
  const existing = route[name] as HookOf<K> | HookOf<K>[] | undefined;
  (route as Record<K, unknown>)[name] = existing === undefined ? [hook] : [existing, hook].flat();
}
