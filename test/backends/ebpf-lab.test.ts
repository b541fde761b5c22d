// The semantic case table with real packets through the eBPF datapath.
import { semanticTableSuite } from './ebpf-semantic-table.ts';

semanticTableSuite('eBPF datapath: semantic case table with real packets');
