// The change tracker: holds the validated objects, recomputes only the services an event
// touched, and hands out per-service-port diffs. Deterministic and free of I/O; the sources
// feed it, the backends read its change sets and its desired state.
import { buildServicePorts, localDetector, nodePortAddresses } from './build.ts';
import type { Family } from './ip.ts';
import type { Rejection } from './rejections.ts';
import type { ChangeSet, DesiredState, FamilyState, ModelConfig, NodeFacts, ServicePortState } from './types.ts';
import { UNKNOWN_NODE } from './types.ts';
import { validateService, validateSlice, type ServiceInfo, type SliceInfo } from './validate.ts';
import { effectiveServiceCIDRs, ofFamily, validateServiceCIDR, type EffectiveServiceCIDRs } from './service-cidrs.ts';

export const LAST_CHANGE_TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

/** The slice's last-change-trigger-time (RFC 3339, set by the EndpointSlice controller) in epoch ms. */
export function lastChangeTriggerTime(obj: unknown): number | undefined {
  const meta = (obj as { metadata?: { annotations?: unknown } } | null)?.metadata;
  const annotations = meta?.annotations;
  if (typeof annotations !== 'object' || annotations === null) return undefined;
  const text = (annotations as Record<string, unknown>)[LAST_CHANGE_TRIGGER_TIME];
  if (typeof text !== 'string' || !/^\d{4}-\d\d-\d\dT/.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

/**
 * Structural equality of model values (plain objects, arrays, primitives), as the model builds
 * them: no string is built, and the first difference ends the walk. Arrays compare in order
 * (endpoints are sorted by the model), objects by their own keys.
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  let n = 0;
  for (const k in ra) {
    if (!Object.hasOwn(ra, k)) continue;
    n++;
    if (!Object.hasOwn(rb, k) || !sameValue(ra[k], rb[k])) return false;
  }
  for (const k in rb) if (Object.hasOwn(rb, k)) n--;
  return n === 0;
}

function sameState(a: ServicePortState, b: ServicePortState): boolean {
  return sameValue(a, b);
}

export class ChangeTracker {
  readonly config: ModelConfig;
  private node: NodeFacts;
  private readonly services = new Map<string, ServiceInfo>();
  private readonly slices = new Map<string, SliceInfo>();
  /** serviceKey -> slice keys labelled for it (also for services not (yet) known). */
  private readonly slicesByService = new Map<string, Set<string>>();
  /** serviceKey -> its programmed service ports, by port key. */
  private readonly portsByService = new Map<string, Map<string, ServicePortState>>();
  private readonly portsByFamily = new Map<Family, Map<string, ServicePortState>>();
  private readonly dirty = new Set<string>();
  private nodeChanged = false;
  /** ServiceCIDR objects by name: their valid CIDRs. */
  private readonly serviceCIDRObjects = new Map<string, readonly string[]>();
  private effectiveCIDRs: EffectiveServiceCIDRs;
  private serviceCIDRsChanged = false;
  private serviceChanges = 0;
  private endpointChanges = 0;
  private triggerTimes: Array<{ service: string; time: number }> = [];

  /** Trigger times before this (epoch ms) are not reported: kube-proxy's trackerStartTime. */
  private readonly triggersAfter: number;

  constructor(config: ModelConfig, node: NodeFacts = UNKNOWN_NODE, options: { triggerTimesAfter?: number } = {}) {
    this.config = config;
    this.node = node;
    this.triggersAfter = options.triggerTimesAfter ?? -Infinity;
    for (const f of config.families) this.portsByFamily.set(f, new Map());
    this.effectiveCIDRs = effectiveServiceCIDRs(config.serviceCIDRs, []);
  }

  /** A ServiceCIDR object, new or changed. Returns why parts of it were refused. */
  upsertServiceCIDR(obj: unknown): Rejection[] {
    const v = validateServiceCIDR(obj);
    if (v === undefined) return [];
    this.serviceCIDRObjects.set(v.name, v.cidrs);
    this.updateServiceCIDRs();
    return v.rejections;
  }

  deleteServiceCIDR(name: string): void {
    if (this.serviceCIDRObjects.delete(name)) this.updateServiceCIDRs();
  }

  /** The service CIDRs in effect and where they come from (service-cidrs.ts). */
  get serviceCIDRs(): EffectiveServiceCIDRs {
    return this.effectiveCIDRs;
  }

  private updateServiceCIDRs(): void {
    const next = effectiveServiceCIDRs(this.config.serviceCIDRs, this.serviceCIDRObjects.values());
    if (sameValue(next, this.effectiveCIDRs)) return;
    this.effectiveCIDRs = next;
    this.serviceCIDRsChanged = true;
  }

  /** Validates and stores a Service (new or changed). Returns why parts of it were refused. */
  upsertService(obj: unknown): Rejection[] {
    const verdict = validateService(obj);
    const key = serviceKeyOf(obj);
    if ('service' in verdict) {
      const k = `${verdict.service.namespace}/${verdict.service.name}`;
      this.services.set(k, verdict.service);
      this.markService(k);
    } else if (key !== undefined) {
      // Skipped (headless, ExternalName) or refused whole: it programs nothing.
      if (this.services.delete(key)) this.markService(key);
    }
    return verdict.rejections;
  }

  deleteService(key: string): void {
    if (this.services.delete(key)) this.markService(key);
  }

  upsertSlice(obj: unknown): Rejection[] {
    const verdict = validateSlice(obj);
    const key = serviceKeyOf(obj);
    if ('slice' in verdict) {
      const k = `${verdict.slice.namespace}/${verdict.slice.name}`;
      const previous = this.slices.get(k);
      if (previous !== undefined && previous.serviceKey !== verdict.slice.serviceKey) this.unindex(k, previous.serviceKey);
      this.slices.set(k, verdict.slice);
      let set = this.slicesByService.get(verdict.slice.serviceKey);
      if (set === undefined) this.slicesByService.set(verdict.slice.serviceKey, (set = new Set()));
      set.add(k);
      this.markEndpoints(verdict.slice.serviceKey);
      const trigger = lastChangeTriggerTime(obj);
      // Changes older than the tracker (the initial list) would measure the slice's age, not latency.
      if (trigger !== undefined && trigger > this.triggersAfter) this.triggerTimes.push({ service: verdict.slice.serviceKey, time: trigger });
    } else if (key !== undefined) {
      this.deleteSlice(key);
    }
    return verdict.rejections;
  }

  deleteSlice(key: string): void {
    const previous = this.slices.get(key);
    if (previous === undefined) return;
    this.slices.delete(key);
    this.unindex(key, previous.serviceKey);
    this.markEndpoints(previous.serviceKey);
  }

  /** New node facts: every service is recomputed (locality and topology depend on them). */
  setNode(node: NodeFacts): void {
    if (sameValue(node, this.node)) return;
    this.node = node;
    this.nodeChanged = true;
    for (const k of this.services.keys()) this.dirty.add(k);
    for (const k of this.portsByService.keys()) this.dirty.add(k);
  }

  get nodeFacts(): NodeFacts {
    return this.node;
  }

  /** Slices whose service is unknown: worth reporting once the sources have synced. */
  orphanSlices(): Rejection[] {
    const out: Rejection[] = [];
    for (const [serviceKey, keys] of this.slicesByService) {
      if (this.services.has(serviceKey)) continue;
      for (const k of keys) out.push({ object: `EndpointSlice ${k}`, reason: 'slice-without-service', detail: `service ${serviceKey} is unknown`, dropped: 'object' });
    }
    return out;
  }

  /** Service and endpoint changes waiting for the next flush (kube-proxy's *_changes_pending). */
  get pendingChanges(): { services: number; endpoints: number } {
    return { services: this.serviceChanges, endpoints: this.endpointChanges };
  }

  /** True while some change has not been flushed. */
  get pending(): boolean {
    return this.dirty.size > 0 || this.nodeChanged || this.serviceCIDRsChanged;
  }

  /** Recomputes what changed since the last flush and returns the per-port differences. */
  flush(): ChangeSet {
    const upserted: ServicePortState[] = [];
    const removed: ServicePortState[] = [];
    for (const key of this.dirty) {
      const previous = this.portsByService.get(key) ?? new Map<string, ServicePortState>();
      const next = new Map<string, ServicePortState>();
      const svc = this.services.get(key);
      if (svc !== undefined) {
        const slices = [...(this.slicesByService.get(key) ?? [])].map((k) => this.slices.get(k)!).filter((s) => s !== undefined);
        for (const family of this.config.families) {
          for (const sp of buildServicePorts(svc, slices, family, this.node, this.config)) next.set(sp.key, sp);
        }
      }
      for (const [k, sp] of next) {
        const old = previous.get(k);
        if (old === undefined || !sameState(old, sp)) {
          upserted.push(sp);
          this.portsByFamily.get(sp.family)?.set(k, sp);
        }
      }
      for (const [k, sp] of previous) {
        if (!next.has(k)) {
          removed.push(sp);
          this.portsByFamily.get(sp.family)?.delete(k);
        }
      }
      if (next.size > 0) this.portsByService.set(key, next);
      else this.portsByService.delete(key);
    }
    const changes: ChangeSet = {
      upserted,
      removed,
      nodeChanged: this.nodeChanged,
      serviceChanges: this.serviceChanges,
      endpointChanges: this.endpointChanges,
      lastChangeTriggerTimes: this.triggerTimes.map((t) => t.time),
      lastChangeTriggers: this.triggerTimes,
      serviceCIDRsChanged: this.serviceCIDRsChanged,
    };
    this.serviceCIDRsChanged = false;
    this.triggerTimes = [];
    this.dirty.clear();
    this.nodeChanged = false;
    this.serviceChanges = 0;
    this.endpointChanges = 0;
    return changes;
  }

  /** The desired state as of the last flush. */
  state(): DesiredState {
    const families = new Map<Family, FamilyState>();
    for (const family of this.config.families) {
      families.set(family, {
        family,
        servicePorts: this.portsByFamily.get(family)!,
        localDetector: localDetector(this.config, this.node, family),
        nodePortAddresses: nodePortAddresses(this.config, this.node, family),
        nodeIPs: this.node.addresses[family],
        serviceCIDRs: ofFamily(this.effectiveCIDRs.cidrs, family),
      });
    }
    return { node: this.node, config: this.config, families, serviceCIDRSource: this.effectiveCIDRs.source };
  }

  private markService(key: string): void {
    this.dirty.add(key);
    this.serviceChanges++;
  }

  private markEndpoints(serviceKey: string): void {
    this.dirty.add(serviceKey);
    this.endpointChanges++;
  }

  private unindex(sliceKey: string, serviceKey: string): void {
    const set = this.slicesByService.get(serviceKey);
    set?.delete(sliceKey);
    if (set?.size === 0) this.slicesByService.delete(serviceKey);
  }
}

/** "ns/name" of an object that has at least those, even when it is otherwise invalid. */
function serviceKeyOf(obj: unknown): string | undefined {
  if (obj === null || typeof obj !== 'object') return undefined;
  const meta = (obj as { metadata?: unknown }).metadata;
  if (meta === null || typeof meta !== 'object') return undefined;
  const { name, namespace } = meta as { name?: unknown; namespace?: unknown };
  return typeof name === 'string' && typeof namespace === 'string' && name !== '' && namespace !== '' ? `${namespace}/${name}` : undefined;
}
