// Logs as kube-proxy's: klog's text header and key="value" pairs by default, component-base's
// JSON with --logging-format=json, -v choosing what is written.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger, klogHeader } from '../../control/cli/logger.ts';

function capture(format: 'text' | 'json', verbosity: number): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger({ format, verbosity, write: (l) => void lines.push(l) }) };
}

describe('logger', () => {
  it("klog's header: severity, mmdd, time to the microsecond, pid right-aligned, file:line", () => {
    const at = new Date(2026, 11, 1, 21, 45, 0, 123).getTime() + 0.456;
    assert.equal(klogHeader('I', at, 12345, 'agent.ts:12'), 'I1201 21:45:00.123456   12345 agent.ts:12]');
    assert.equal(klogHeader('E', at, 7, 'x.ts:1'), 'E1201 21:45:00.123456       7 x.ts:1]');
  });

  it('text by default: quoted message, key="value", numbers bare, the caller of the log call', () => {
    const { lines, log } = capture('text', 0);
    log.info({ mode: 'ebpf', ms: 1.5, ok: true, err: new Error('boom') }, 'synced');
    log.child({ server: 'healthz' }).warn('port "x" busy');
    log.debug('not at -v 0');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^I\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ logger\.test\.ts:\d+\] "synced" mode="ebpf" ms=1\.5 ok=true err="boom"\n$/);
    assert.match(lines[1]!, /^W\d{4} .* logger\.test\.ts:\d+\] "port \\"x\\" busy" server="healthz"\n$/);
  });

  it('-v 4 writes debug lines; JSON carries ts in epoch ms, caller, msg and v', () => {
    const { lines, log } = capture('json', 4);
    const before = Date.now();
    log.debug({ kind: 'Service' }, 'relisted');
    log.error({ error: 'refused' }, 'sync failed');
    const debug = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(debug.msg, 'relisted');
    assert.equal(debug.v, 4);
    assert.equal(debug.kind, 'Service');
    assert.match(String(debug.caller), /^cli\/logger\.test\.ts:\d+$/);
    assert.ok(Number(debug.ts) >= before - 1 && Number(debug.ts) < before + 60_000);
    const error = JSON.parse(lines[1]!) as Record<string, unknown>;
    assert.equal(error.v, undefined);
    assert.equal(error.severity, 'error');
  });
});
