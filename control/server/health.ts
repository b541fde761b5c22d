// kube-proxy's proxy health semantics, as pure functions over a snapshot of the agent's state:
// unhealthy when a queued change has not been programmed within 2 x syncPeriod; healthz (not
// livez) also fails while the node is being deleted or carries ToBeDeletedByClusterAutoscaler.
import type { Family } from '../model/ip.ts';

export interface HealthSnapshot {
  now: number;
  /** When the last sync finished; undefined before the first. */
  lastUpdated: number | undefined;
  /** When the oldest change still waiting was queued; undefined when nothing waits. */
  lastQueued: number | undefined;
  /** kube-proxy's healthTimeout: 2 x syncPeriod. */
  healthTimeoutMs: number;
  nodeDeleting: boolean;
  nodeToBeDeleted: boolean;
  families: readonly Family[];
}

export interface HealthAnswer {
  code: 200 | 503;
  body: Record<string, unknown>;
}

function iso(ms: number | undefined): string {
  return ms === undefined ? '' : new Date(ms).toISOString();
}

export function isHealthy(s: HealthSnapshot): boolean {
  if (s.lastQueued === undefined) return true;
  return s.now - s.lastQueued < s.healthTimeoutMs;
}

function answer(s: HealthSnapshot, eligible: boolean | undefined): HealthAnswer {
  const healthy = isHealthy(s);
  const status: Record<string, unknown> = {};
  for (const f of s.families) status[`IPv${f}`] = { lastUpdated: iso(s.lastUpdated), healthy };
  const body: Record<string, unknown> = { lastUpdated: iso(s.lastUpdated), currentTime: iso(s.now) };
  if (eligible !== undefined) body.nodeEligible = eligible;
  body.healthy = healthy;
  body.status = status;
  return { code: healthy && eligible !== false ? 200 : 503, body };
}

export function healthz(s: HealthSnapshot): HealthAnswer {
  return answer(s, !(s.nodeDeleting || s.nodeToBeDeleted));
}

export function livez(s: HealthSnapshot): HealthAnswer {
  return answer(s, undefined);
}
