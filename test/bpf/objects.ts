// Paths of the compiled BPF objects the tests load.
import { fileURLToPath } from 'node:url';

export const buildDir = fileURLToPath(new URL('../../build/bpf/', import.meta.url));
export const skeletonObject = `${buildDir}skeleton.o`;
export const rejectedObject = `${buildDir}fixtures/rejected.o`;
