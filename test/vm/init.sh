#!/bin/busybox sh
# /init of the test VM: load the 9p modules, mount this machine's root read-only and the exchange
# directory read-write, then run the guest runner chrooted into the host's root, and power off.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /host
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio 9pnet 9pnet_virtio netfs fscache 9p virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci; do
  insmod /modules/$m.ko 2>/dev/null
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /host || { echo "vm: cannot mount the host root"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L exchange /host/mnt || { echo "vm: cannot mount the exchange directory"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs run /host/run  # /tmp stays the host's (read-only): the checkout may live there
mount -t bpf bpf /host/sys/fs/bpf
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
# Modules the kernel asks for (bridge, veth, clsact, ip_vs ...) come from the host's tree.
mkdir -p /sbin
printf '#!/bin/busybox sh\nexec /bin/busybox chroot /host /sbin/modprobe "$@"\n' > /sbin/modprobe-host
chmod 0755 /sbin/modprobe-host
echo /sbin/modprobe-host > /proc/sys/kernel/modprobe
chroot /host /bin/sh /mnt/guest.sh
poweroff -f
