// The OCI runtime configuration a kubelet + containerd would give Switchyard's DaemonSet pod,
// derived from deploy/daemonset.yaml itself (capabilities, privilege escalation, args, env,
// volume mounts), with a lab node standing in for the node: its network namespace is the "host
// network", its cgroup is the host cgroup the DaemonSet mounts. The rest is what containerd does
// for a non-privileged container: sysfs read-only, /proc/sys and friends read-only, kernel
// files masked, fresh pid/ipc/uts/mount/cgroup namespaces. Seccomp is left unconfined, which
// is Kubernetes' default (the kubelet's seccompDefault is off unless set). Pure.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- manifests are free-form YAML

export function daemonSet(): Obj {
  return parse(readFileSync(fileURLToPath(new URL('../../deploy/daemonset.yaml', import.meta.url)), 'utf8')) as Obj;
}

/** A file of deploy/configmap.yaml's data, as the pod sees it in its config volume. */
export function configMapFile(name: 'config.conf' | 'kubeconfig.conf'): string {
  const cm = parse(readFileSync(fileURLToPath(new URL('../../deploy/configmap.yaml', import.meta.url)), 'utf8')) as Obj;
  return String(cm.data[name]);
}

/** The shipped ConfigMap's config.conf, pointed at the lab: its mode, CIDRs, pins. */
export function labConfig(mode: string, bpffsDir: string, kubeProxy: Record<string, unknown> = {}): string {
  const [kp, sy] = parseAllDocuments(configMapFile('config.conf')).map((d) => d.toJS() as Record<string, unknown>);
  Object.assign(kp!, { mode, clusterCIDR: '10.244.0.0/16,fd00:10:244::/48', nodePortAddresses: ['10.254.0.0/24', 'fd00:254::/64'], ...kubeProxy });
  Object.assign(sy!, { bpffsDir, externalDevices: ['eth0'] });
  return `${stringify(kp)}---\n${stringify(sy)}`;
}


export interface PodStandIns {
  /** The lab node's network namespace (hostNetwork: true). */
  netnsPath: string;
  /** What spec.nodeName would be. */
  nodeName: string;
  /** hostPath volumes: host path -> what the test mounts instead (the identity where it is safe). */
  hostPaths: Record<string, string>;
  /** configMap volumes: ConfigMap name -> a directory holding its files. */
  configMaps: Record<string, string>;
  /** The container's cgroup, relative to the cgroup roots (named so the lab's sweep finds it). */
  cgroupsPath: string;
  /** What the kubelet adds to every pod's env (KUBERNETES_SERVICE_HOST/PORT). */
  kubeletEnv?: Record<string, string>;
  /** The service account's files (ca.crt, token, namespace), mounted where the kubelet mounts them. */
  serviceAccount?: string;
  /** Appended to the DaemonSet's args. */
  extraArgs?: string[];
  /** Replaces the whole command line (entrypoint and args), e.g. to look inside the image. */
  command?: string[];
}

/** containerd's defaults for a non-privileged container (oci.WithDefaultSpec and WithMounts). */
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
const MASKED_PATHS = ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];

/** Kubernetes' $(VAR) expansion in args, from the container's env. */
function expand(arg: string, env: Record<string, string>): string {
  return arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
}

/**
 * `image`: the image's own process settings (entrypoint as args, env, cwd), as umoci's generated
 * config.json carries them.
 */
/**
 * What the kubelet creates on the node before it starts the pod: the stand-ins of hostPath
 * volumes of type FileOrCreate (an empty file) or DirectoryOrCreate (a directory). On a fresh
 * node /run/xtables.lock exists only once some iptables ran; runc's bind mount needs it first.
 */
export function hostPathsToCreate(ds: Obj, s: Pick<PodStandIns, 'hostPaths'>): Array<{ path: string; kind: 'file' | 'directory' }> {
  const out: Array<{ path: string; kind: 'file' | 'directory' }> = [];
  for (const v of ds.spec.template.spec.volumes ?? []) {
    const type = v.hostPath?.type;
    if (type !== 'FileOrCreate' && type !== 'DirectoryOrCreate') continue;
    const standIn = s.hostPaths[v.hostPath.path];
    if (standIn !== undefined) out.push({ path: standIn, kind: type === 'FileOrCreate' ? 'file' : 'directory' });
  }
  return out;
}

export function podRuntimeConfig(ds: Obj, image: { args: string[]; env: string[]; cwd: string }, s: PodStandIns): Obj {
  const pod = ds.spec.template.spec;
  if (pod.hostNetwork !== true) throw new Error('the DaemonSet is expected on the host network');
  const c = pod.containers[0];
  const sc = c.securityContext ?? {};
  if (sc.privileged === true) throw new Error('a privileged DaemonSet needs no capability test');
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[e.name] = s.nodeName;
    else throw new Error(`env ${e.name}: the test cannot stand in for ${JSON.stringify(e.valueFrom)}`);
  }
  const dropAll = (sc.capabilities?.drop ?? []).includes('ALL');
  if (!dropAll) throw new Error('the DaemonSet is expected to drop ALL capabilities and add what it needs');
  const caps = (sc.capabilities?.add ?? []).map((x: string) => `CAP_${x}`);
  const volumes = new Map<string, Obj>((pod.volumes ?? []).map((v: Obj) => [v.name, v]));
  const volumeMounts = (c.volumeMounts ?? []).map((m: Obj) => {
    const v = volumes.get(m.name);
    if (v === undefined) throw new Error(`volumeMount ${m.name} has no volume`);
    let source: string;
    if (v.hostPath !== undefined) {
      const standIn = s.hostPaths[v.hostPath.path];
      if (standIn === undefined) throw new Error(`hostPath ${v.hostPath.path}: the test has no stand-in for it`);
      source = standIn;
    } else if (v.configMap !== undefined) {
      const dir = s.configMaps[v.configMap.name];
      if (dir === undefined) throw new Error(`configMap ${v.configMap.name}: the test has no files for it`);
      source = dir;
    } else {
      throw new Error(`volume ${m.name}: a kind the test cannot stand in for`);
    }
    // HostToContainer is rslave; kubelet's default (None) is rprivate.
    const propagation = m.mountPropagation === 'HostToContainer' ? 'rslave' : m.mountPropagation === 'Bidirectional' ? 'rshared' : 'rprivate';
    return { destination: m.mountPath, type: 'bind', source, options: ['rbind', propagation, m.readOnly === true ? 'ro' : 'rw'] };
  });
  const args = s.command ?? [...image.args, ...(c.command ?? []).map((a: string) => expand(a, env)), ...(c.args ?? []).map((a: string) => expand(a, env)), ...(s.extraArgs ?? [])];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: sc.runAsUser ?? 0, gid: 0 },
      args,
      env: [...image.env, ...Object.entries({ ...s.kubeletEnv, ...env }).map(([k, v]) => `${k}=${v}`)],
      cwd: image.cwd || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: sc.allowPrivilegeEscalation === false,
    },
    root: { path: 'rootfs', readonly: sc.readOnlyRootFilesystem === true },
    hostname: s.nodeName,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      ...volumeMounts,
      ...(s.serviceAccount === undefined ? [] : [{ destination: '/var/run/secrets/kubernetes.io/serviceaccount', type: 'bind', source: s.serviceAccount, options: ['rbind', 'rprivate', 'ro'] }]),
    ],
    linux: {
      cgroupsPath: s.cgroupsPath,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }, { type: 'network', path: s.netnsPath }],
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}
