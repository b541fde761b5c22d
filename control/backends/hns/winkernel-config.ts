// The winkernel section of KubeProxyConfiguration (already type-checked by the strict decoder in
// control/config), read into the settings of kernelspace mode with kube-proxy's fallbacks: the
// HNS network name from $KUBE_NETWORK when unset, the root endpoint "cbr0".
import { isIP } from 'node:net';

export interface WinkernelConfig {
  /** The HNS network the pods are on. */
  networkName: string;
  /** The SourceVIP of the load balancers (required on overlay networks). */
  sourceVip: string;
  /** Direct Server Return for externalTrafficPolicy Local (kube-proxy's WinDSR). */
  enableDSR: boolean;
  /** The host's endpoint on the network, the target of forwarded health checks. */
  rootHnsEndpointName: string;
  /** Forward each LB IP's health-check port to the host. */
  forwardHealthCheckVip: boolean;
}

export function winkernelConfig(kubeProxy: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): WinkernelConfig {
  const w = (kubeProxy.winkernel ?? {}) as Record<string, unknown>;
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
  const config: WinkernelConfig = {
    networkName: text(w.networkName) !== '' ? text(w.networkName) : (env.KUBE_NETWORK ?? ''),
    sourceVip: text(w.sourceVip),
    enableDSR: w.enableDSR === true,
    rootHnsEndpointName: text(w.rootHnsEndpointName) !== '' ? text(w.rootHnsEndpointName) : 'cbr0',
    forwardHealthCheckVip: w.forwardHealthCheckVip === true,
  };
  if (config.networkName === '') throw new Error('kernelspace mode needs the HNS network: winkernel.networkName in the configuration, or $KUBE_NETWORK');
  if (config.sourceVip !== '' && isIP(config.sourceVip) === 0) throw new Error(`winkernel.sourceVip: not an IP address: ${JSON.stringify(config.sourceVip)}`);
  return config;
}

/** The port of healthzBindAddress (kube-proxy's healthzPort, 10256 by default): winkernel's health-check VIP target. */
export function healthzPort(kubeProxy: Record<string, unknown>): number {
  const m = /:(\d+)$/.exec(typeof kubeProxy.healthzBindAddress === 'string' ? kubeProxy.healthzBindAddress : '');
  return m !== null ? Number(m[1]) : 10256;
}
