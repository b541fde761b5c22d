#!/usr/bin/env bash
# Compiles every bpf/*.c into build/bpf/*.o: clang -target bpf -O2 -g (BTF on).
# Also used by tests to build deliberately broken programs from test/bpf/fixtures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/bpf"
mkdir -p "$out"
arch_include="/usr/include/$(uname -m)-linux-gnu"
compile() {
  local src=$1 obj=$2
  shift 2
  clang -target bpf -O2 -g -Wall -Werror -Wno-unused-function \
    -I "$root/bpf" -I "$arch_include" "$@" -c "$src" -o "$obj.tmp"
  mv "$obj.tmp" "$obj"
}
for src in "$root"/bpf/*.c; do
  name=$(basename "$src" .c)
  obj="$out/$name.o"
  # Rebuild only what changed: a source or any header newer than the object.
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find "$root/bpf/include" -newer "$obj" -print -quit)" ]; then
    compile "$src" "$obj"
  fi
done
# The datapath once more for kernels with bpf_cast_to_kern_ctx (6.2+): it reads skb->ip_summed and
# updates L4 checksums inline (bpf/include/nat.h). The agent picks the build its kernel can load.
kctx="$out/datapath-kctx.o"
if [ ! -f "$kctx" ] || [ "$out/datapath.o" -nt "$kctx" ]; then
  compile "$root/bpf/datapath.c" "$kctx" -DSY_KERN_CTX
fi
# And once for kernels 5.10 to 5.17 (object-path.ts probes which helpers the kernel has): no
# bpf_set_retval (5.18), so the socket hooks refuse with EPERM instead of ECONNREFUSED
# (include/sock.h), and no bpf_ktime_get_coarse_ns (5.11), so the clock reads CLOCK_MONOTONIC
# (include/clock.h).
compat="$out/datapath-compat.o"
if [ ! -f "$compat" ] || [ "$out/datapath.o" -nt "$compat" ]; then
  compile "$root/bpf/datapath.c" "$compat" -DSY_NO_SET_RETVAL -DSY_NO_COARSE_CLOCK
fi
# Benchmark entry points around the datapath (bench/bpf/*.c include bpf/datapath.c).
if [ -d "$root/bench/bpf" ]; then
  mkdir -p "$out/bench"
  for src in "$root"/bench/bpf/*.c; do
    [ -e "$src" ] || continue
    compile "$src" "$out/bench/$(basename "$src" .c).o"
    compile "$src" "$out/bench/$(basename "$src" .c)-kctx.o" -DSY_KERN_CTX
    compile "$src" "$out/bench/$(basename "$src" .c)-compat.o" -DSY_NO_SET_RETVAL -DSY_NO_COARSE_CLOCK
  done
fi
if [ -d "$root/test/bpf/fixtures" ]; then
  mkdir -p "$out/fixtures"
  for src in "$root"/test/bpf/fixtures/*.c; do
    [ -e "$src" ] || continue
    compile "$src" "$out/fixtures/$(basename "$src" .c).o"
  done
fi

# Test tools in C (test/tools/*.c) are host programs, built beside the objects.
if [ -d "$root/test/tools" ]; then
  mkdir -p "$root/build/tools"
  for src in "$root"/test/tools/*.c; do
    [ -e "$src" ] || continue
    bin="$root/build/tools/$(basename "$src" .c)"
    if [ ! -f "$bin" ] || [ "$src" -nt "$bin" ]; then cc -O2 -Wall -Werror -o "$bin" "$src"; fi
  done
fi
