// External devices that are not Ethernet (WireGuard, IPIP, GRE, tun: L3 devices whose packets
// start at the IP header) are refused at attach, once, with the device's name and link type,
// while the Ethernet devices beside them are served. With a real L3 device (tun, link type
// "none" like WireGuard's; this kernel has no ipip or wireguard) in a network namespace.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { tcQuery } from '../../control/bpf/attach.ts';
import { attachRefusal, parseLinks, podIngressProgram, xdpChoice } from '../../control/backends/ebpf/devices.ts';
import { run } from '../lab/exec.ts';
import { inNetns, netnsPath } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';

const prefix = `${runPrefix()}-l3`;
const netns = `${prefix}-node`;
const SCRIPT = fileURLToPath(new URL('./attach-devices.ts', import.meta.url));

describe('eBPF backend: L3 external devices', () => {
  before(async () => {
    teardownNamesSync(prefix);
    // The tun driver may be a module that nothing loaded yet (the test VM's Debian kernels).
    if (!existsSync('/dev/net/tun')) await run('modprobe', ['tun']);
    await run('ip', ['netns', 'add', netns]);
    await run('ip', ['-n', netns, 'tuntap', 'add', 'dev', 'sytun0', 'mode', 'tun']);
    await run('ip', ['-n', netns, 'link', 'add', 'name', 'syeth0', 'type', 'veth', 'peer', 'name', 'syeth1']);
    for (const dev of ['sytun0', 'syeth0', 'syeth1']) await run('ip', ['-n', netns, 'link', 'set', dev, 'up']);
  });
  after(() => teardownNamesSync(prefix));

  it('only Ethernet-framed link types are attachable', () => {
    for (const linkType of ['ether', 'loopback']) assert.equal(attachRefusal({ ifname: 'd', ifindex: 1, linkType }), undefined, linkType);
    for (const linkType of ['none', 'ipip', 'gre', 'sit', 'tunnel6']) assert.match(attachRefusal({ ifname: 'wg0', ifindex: 1, linkType })!, new RegExp(`^wg0 is an L3 device \\(link type ${linkType}\\)`));
  });

  it('xdpMode auto: native XDP, except on a veth or tap (where it costs GSO), and never generic', () => {
    const [veth, tap, nic, bridge] = parseLinks(JSON.stringify([
      { ifname: 'eth0', ifindex: 2, link_type: 'ether', linkinfo: { info_kind: 'veth' } },
      { ifname: 'tap0', ifindex: 3, link_type: 'ether', linkinfo: { info_kind: 'tun' } },
      { ifname: 'ens3', ifindex: 4, link_type: 'ether' },
      { ifname: 'br0', ifindex: 5, link_type: 'ether', linkinfo: { info_kind: 'bridge' } },
    ]));
    assert.deepEqual([veth!.kind, nic!.kind], ['veth', undefined]);
    const skip = xdpChoice(veth!, 'auto');
    assert.ok('skip' in skip && skip.skip !== undefined);
    assert.match(skip.skip, /^no XDP on eth0 \(xdpMode auto\): native XDP on a veth turns TSO off on its peer/);
    assert.ok('skip' in xdpChoice(tap!, 'auto'));
    assert.deepEqual(xdpChoice(nic!, 'auto'), { mode: 'native' });
    // A kind without native XDP is tried natively and, refused by its driver, left to tc.
    assert.deepEqual(xdpChoice(bridge!, 'auto'), { mode: 'native' });
    assert.deepEqual(xdpChoice(veth!, 'native'), { mode: 'native' }, 'asked for by name');
    assert.deepEqual(xdpChoice(veth!, 'generic'), { mode: 'generic' }, 'asked for by name');
    assert.deepEqual(xdpChoice(nic!, 'off'), { skip: undefined });
  });

  it('a pod device gets sy_from_veth (hairpin by bpf_redirect_peer) only as the host end of a veth or netkit pair whose peer is in another namespace', () => {
    const links = parseLinks(JSON.stringify([
      { ifname: 'veth0', ifindex: 2, link_type: 'ether', link_netnsid: 3, linkinfo: { info_kind: 'veth' } },
      { ifname: 'nk0', ifindex: 3, link_type: 'ether', link_netnsid: 0, linkinfo: { info_kind: 'netkit' } },
      { ifname: 'vethx', ifindex: 4, link_type: 'ether', linkinfo: { info_kind: 'veth' } },
      { ifname: 'cni0', ifindex: 5, link_type: 'ether', linkinfo: { info_kind: 'bridge' } },
      { ifname: 'ens3', ifindex: 6, link_type: 'ether' },
    ]));
    assert.deepEqual(links.map((l) => [l.ifname, podIngressProgram(l)]), [['veth0', 'sy_from_veth'], ['nk0', 'sy_from_veth'], ['vethx', 'sy_from_pod'], ['cni0', 'sy_from_pod'], ['ens3', 'sy_from_pod']]);
  });

  it('a tun device is refused by name and type, once; the Ethernet device beside it is attached', async () => {
    const [nsenter, ...args] = inNetns(netns);
    const out = await run(nsenter!, [...args, process.execPath, SCRIPT, JSON.stringify({ pinDir: `/sys/fs/bpf/${prefix}-pins`, externalDevices: ['sytun0', 'syeth0'] })]);
    const { logs, devices } = JSON.parse(out.trim().split('\n').at(-1)!) as { logs: Array<{ message: string; device?: string; linkType?: string }>; devices: string[] };
    const refusals = logs.filter((l) => l.device === 'sytun0');
    assert.equal(refusals.length, 1, JSON.stringify(logs));
    assert.match(refusals[0]!.message, /^sytun0 is an L3 device \(link type none\): its packets have no Ethernet header/);
    assert.equal(refusals[0]!.linkType, 'none');
    assert.deepEqual(devices, ['syeth0']);
    assert.ok((tcQuery({ ifname: 'syeth0', netns: netnsPath(netns), direction: 'ingress' }) ?? 0) > 0, 'sy_from_external on the veth');
    let onTun: number | null = null;
    try {
      onTun = tcQuery({ ifname: 'sytun0', netns: netnsPath(netns), direction: 'ingress' });
    } catch {
      onTun = null; // no clsact qdisc at all: nothing of ours there either
    }
    assert.equal(onTun, null, 'nothing of ours on the tun device');
  });
});
