// Waiting for a condition in tests: poll it, with a bound, never a fixed sleep.

/**
 * Resolves once `check` holds, polling every `everyMs`; fails after `timeoutMs` naming `what`.
 * A check that throws (a server not listening yet) counts as not yet.
 */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve().then(check).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
