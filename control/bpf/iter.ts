// BPF iterators (iter/tcp, iter/udp, ...): one run of an iterator program over what it walks.
import { call } from './errors.ts';
import { native } from './native.ts';

/**
 * Runs the iterator program `progFd` to its end and returns what it wrote (bpf_seq_write). Socket
 * iterators walk the network namespace they are created in: this process's, or netnsPath's.
 */
export function iterRun(progFd: number, netnsPath?: string): Buffer {
  return call(() => native().iterRun(progFd, netnsPath));
}
