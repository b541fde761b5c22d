// Small integer ids for map keys (backends, backend sets, rev-NAT entries, service ports):
// stable while in use, reused after release, bounded by the map's size.

export class IdAllocator {
  private readonly used = new Set<number>();
  private readonly free: number[] = [];
  private next = 1;
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Marks an id found in pinned maps as taken. */
  claim(id: number): void {
    this.used.add(id);
    if (id >= this.next) {
      for (let i = this.next; i < id; i++) if (!this.used.has(i)) this.free.push(i);
      this.next = id + 1;
    }
    const at = this.free.indexOf(id);
    if (at >= 0) this.free.splice(at, 1);
  }

  alloc(): number {
    const id = this.free.pop() ?? this.next++;
    if (id > this.limit) {
      this.next--;
      throw new RangeError(`no free id below ${this.limit}`);
    }
    this.used.add(id);
    return id;
  }

  release(id: number): void {
    if (this.used.delete(id)) this.free.push(id);
  }

  get size(): number {
    return this.used.size;
  }
}
