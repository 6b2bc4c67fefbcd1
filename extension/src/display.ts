/** Small text helpers of the sidebar's sections (pure functions). */

/**
 * `key=value, ...` of a dataset's storage options. The catalog holds references
 * (env:NAME, keyring:SERVICE/USER, file:PATH), never secrets; the server hides any
 * literal value under a secret-looking key before it gets here.
 */
export function storageOptionsText(options: Record<string, unknown>): string {
  return Object.entries(options)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
}
