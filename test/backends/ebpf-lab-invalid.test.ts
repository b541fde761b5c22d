// Calico's and Docker's rules drop what conntrack calls INVALID. Answers translated before
// netfilter saw them would be (a SYN-ACK from the service address to a client whose SYN went to
// the pod): the datapath translates them after netfilter, or keeps node-address flows past it.
import { semanticTableSuite } from './ebpf-semantic-table.ts';

semanticTableSuite('eBPF datapath: semantic case table with conntrack INVALID dropped on every node', async (lab) => {
  for (const n of lab.nodes) {
    for (const tool of ['iptables', 'ip6tables']) {
      for (const chain of ['FORWARD', 'INPUT']) await lab.exec(n.netns, tool, ['-w', '5', '-A', chain, '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
    }
  }
});
