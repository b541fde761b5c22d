#!/usr/bin/env bash
# npm run image: Switchyard's OCI image, built without a container engine.
#   1. a Debian bookworm rootfs from deploy/image/packages.txt (mmdebstrap, variant essential),
#      cached in build/image/cache under a hash of its inputs, so a rerun reuses it;
#   2. a second layer: Node 24 (the binary the `node` npm package ships), control/, proto/, the
#      addon, the BPF objects, and the production node_modules (`npm ci --omit=dev` in a staging
#      directory);
#   3. an OCI image layout at build/image/oci, tag switchyard:<version> (umoci).
# Push it with e.g. `skopeo copy oci:build/image/oci:switchyard:0.1.0 docker://REGISTRY/switchyard:0.1.0`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=build/image
suite=bookworm
# The Debian mirrors this machine's own apt sources name (the registry it may reach).
sources=/etc/apt/sources.list.d/debian.sources
mirror=$(awk '/^URIs:/ { print $2; exit }' "$sources" 2>/dev/null || true)
security=$(awk '/^URIs:/ && /security/ { print $2; exit }' "$sources" 2>/dev/null || true)
[ -n "$mirror" ] || { echo "npm run image: no Debian mirror in $sources" >&2; exit 1; }
[ -n "$security" ] || security="$mirror-security"
version=$(node -p 'require("./package.json").version')
tag=switchyard:$version

for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "npm run image needs $tool (bash .ci/setup installs it)" >&2; exit 1; }
done
for f in build/Release/switchyard.node build/bpf/datapath.o build/bpf/datapath-kctx.o node_modules/node/bin/node; do
  [ -e "$f" ] || { echo "missing $f: run npm ci && npm run build:bpf first" >&2; exit 1; }
done

mkdir -p "$out/cache"
# One build at a time (two test files may ask for the image at once); the second reuses the cache.
exec 9>"$out/.lock"
flock 9
t0=$(date +%s)
packages=$(grep -v '^#' deploy/image/packages.txt | grep -v '^$' | sort | paste -sd, -)
# Everything that decides the rootfs's content goes into its cache key.
key=$(printf '%s\n' "$suite" "$mirror" "$packages" "$(sed -n '/^mmdebstrap_args=/,/^)/p' "$0")" | sha256sum | cut -c1-16)
base="$out/cache/rootfs-$key.tar"
mmdebstrap_args=(
  --variant=essential --mode=root --format=tar
  --include="$packages"
  --aptopt='Acquire::Languages "none"'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*'
)
if [ ! -f "$base" ]; then
  echo "image: building the Debian $suite rootfs ($packages)"
  rm -f "$out"/cache/rootfs-*.tar
  mmdebstrap "${mmdebstrap_args[@]}" "$suite" "$base.partial" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main"
  mv "$base.partial" "$base"
else
  echo "image: reusing the rootfs $base"
fi
t1=$(date +%s)

# The application layer, staged under build/image/app/opt/switchyard.
stage="$out/app"
rm -rf "$stage"
app="$stage/opt/switchyard"
mkdir -p "$app/build/Release" "$app/build/bpf" "$stage/usr/local/bin"
cp package.json package-lock.json "$app/"
# Production dependencies only; the addon is copied already built, so no install scripts run.
npm ci --prefix "$app" --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
# The control plane as JavaScript (tsconfig.build.json): the agent never strips types at start-up.
cp -r proto "$app/"
node_modules/.bin/tsc -p tsconfig.build.json --outDir "$app"
cp build/Release/switchyard.node "$app/build/Release/"
cp build/bpf/*.o "$app/build/bpf/"
cp "$(readlink -f node_modules/node/bin/node)" "$stage/usr/local/bin/node"
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$stage" -cf "$out/app.tar" .
t2=$(date +%s)

rm -rf "$out/oci"
umoci init --layout "$out/oci"
umoci new --image "$out/oci:$tag"
umoci raw add-layer --image "$out/oci:$tag" "$base"
umoci raw add-layer --image "$out/oci:$tag" "$out/app.tar"
umoci config --image "$out/oci:$tag" \
  --config.workingdir /opt/switchyard \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.entrypoint node --config.entrypoint /opt/switchyard/control/cli/main.js \
  --author switchyard --os linux --architecture amd64
umoci gc --layout "$out/oci"
rm -rf "$stage" "$out/app.tar"
t3=$(date +%s)
echo "image: $out/oci:$tag ($(du -sh "$out/oci" | cut -f1)); rootfs $((t1 - t0)) s, app layer $((t2 - t1)) s, OCI layout $((t3 - t2)) s"
