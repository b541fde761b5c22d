// Stands in for client-node's generated API inside its config module (see kubeconfig-class.ts):
// only makeApiClient() reaches these, and the agent does not call it.
const unused = (): never => {
  throw new Error("client-node's generated API is not loaded in the agent (KubeConfig.makeApiClient is not supported here)");
};
export const createConfiguration = unused;
export class ServerConfiguration {
  constructor() {
    unused();
  }
}
