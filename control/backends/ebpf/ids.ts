// Small integer ids for map keys (backends, backend sets, rev-NAT entries, service ports):
// stable while in use, bounded by the map's size. An allocator with quarantine holds released ids
// until the caller says nothing refers to them any more (connection tracking entries name service
// ports and rev-NAT entries by id): a flow must never reach what a reused id names next.

export class IdAllocator {
  private readonly used = new Set<number>();
  /** Free ids to hand out (last first); an id claimed meanwhile is skipped, so claims cost O(1). */
  private readonly free: number[] = [];
  private readonly freeSet = new Set<number>();
  /** Released, and perhaps still named by live flows (quarantine only). */
  private readonly held = new Set<number>();
  private next = 1;
  readonly limit: number;
  readonly quarantine: boolean;

  constructor(limit: number, options: { quarantine?: boolean } = {}) {
    this.limit = limit;
    this.quarantine = options.quarantine ?? false;
  }

  /**
   * Marks an id found in pinned maps as taken. The ids below it that nobody claims are free, or,
   * with quarantine, held: a previous agent may have released them while flows still name them.
   */
  claim(id: number): void {
    if (this.used.has(id)) return;
    this.used.add(id);
    if (id >= this.next) {
      for (let i = this.next; i < id; i++) {
        if (this.quarantine) this.held.add(i);
        else this.pushFree(i);
      }
      this.next = id + 1;
    }
    this.held.delete(id);
    this.freeSet.delete(id);
  }

  private pushFree(id: number): void {
    this.free.push(id);
    this.freeSet.add(id);
  }

  private popFree(): number | undefined {
    for (let id = this.free.pop(); id !== undefined; id = this.free.pop()) {
      if (this.freeSet.delete(id)) return id;
    }
    return undefined;
  }

  alloc(): number {
    const id = this.popFree() ?? this.next++;
    if (id > this.limit) {
      this.next--;
      throw new RangeError(`no free id below ${this.limit}${this.held.size > 0 ? ` (${this.held.size} held until no flow names them)` : ''}`);
    }
    this.used.add(id);
    return id;
  }

  release(id: number): void {
    if (!this.used.delete(id)) return;
    if (this.quarantine) this.held.add(id);
    else this.pushFree(id);
  }

  /** Ends the quarantine of every held id not in `referenced`; returns the ids now free. */
  releaseUnreferenced(referenced: ReadonlySet<number>): number[] {
    const freed: number[] = [];
    for (const id of this.held) {
      if (referenced.has(id)) continue;
      this.held.delete(id);
      this.pushFree(id);
      freed.push(id);
    }
    return freed;
  }

  /** Ids released but still held. */
  get heldIds(): ReadonlySet<number> {
    return this.held;
  }

  get size(): number {
    return this.used.size;
  }
}
