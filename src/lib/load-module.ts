// Owns run-time loading of the packages kept outside the bundle (PGlite, node-pg-migrate, Swagger UI).
//
// In the bundle, dist/server.js passes its own import() in as `__loadModule`: on Node 20, import()
// inside a script compiled from V8's code cache throws ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING.
// Anywhere else (tsx, the per-file CLIs) this module's own import() runs.
declare const __loadModule: ((specifier: string) => Promise<unknown>) | undefined;

export function loadModule<T>(specifier: string): Promise<T> {
  return (typeof __loadModule === 'function' ? __loadModule(specifier) : import(specifier)) as Promise<T>;
}
