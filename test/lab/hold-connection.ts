// Holds one TCP connection open for a test (graceful termination of a backend):
//   node hold-connection.ts HOST PORT
// prints the pod's reply line, keeps its side of the connection open until stdin closes, then
// resets the connection and exits.
import { connect } from 'node:net';

const [host, port] = process.argv.slice(2);
const socket = connect({ host: host!, port: Number(port), allowHalfOpen: true });
socket.on('data', (d) => process.stdout.write(d));
socket.on('error', (e) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
process.stdin.resume();
process.stdin.on('end', () => {
  socket.resetAndDestroy();
  setTimeout(() => process.exit(0), 100);
});
