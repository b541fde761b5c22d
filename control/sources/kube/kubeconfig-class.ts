// client-node's KubeConfig without the rest of client-node. Its index, and even its config
// module, import the generated API (gen/index.js: thousands of model and API classes), which
// costs ~80 MiB of RSS and ~0.6 s of start-up in an agent that only needs KubeConfig's loading
// of kubeconfig files, in-cluster service accounts (with token rotation) and TLS/auth options.
// config.js uses the generated code only in makeApiClient(), which the agent never calls: a
// resolve hook hands config.js a stub of those two names instead, and the class is loaded
// with require() (Node 24 requires ES modules synchronously, through the same hooks).
import { createRequire, registerHooks } from 'node:module';
import type { KubeConfig as KubeConfigType } from '@kubernetes/client-node';

// The stub's file ends as this one does: .ts in the checkout, .js in the image (tsconfig.build.json).
const STUB = new URL(`./client-node-gen-stub${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url).href;
let loaded: typeof KubeConfigType | undefined;

/** The KubeConfig class, loaded once, without client-node's generated API. */
export function kubeConfigClass(): typeof KubeConfigType {
  if (loaded !== undefined) return loaded;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (specifier === './gen/index.js' && context.parentURL?.endsWith('/@kubernetes/client-node/dist/config.js')) return { url: STUB, shortCircuit: true };
      return nextResolve(specifier, context);
    },
  });
  const mod = createRequire(import.meta.url)('@kubernetes/client-node/dist/config.js') as { KubeConfig: typeof KubeConfigType };
  loaded = mod.KubeConfig;
  return loaded;
}
