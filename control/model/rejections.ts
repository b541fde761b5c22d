// Why an object (or part of one) was not programmed. Pure data; the adapter that logs and
// counts them (once per object and reason, not per event) lives in sources/rejection-log.ts.

export type RejectionReason =
  | 'decode-error'
  | 'malformed'
  | 'missing-field'
  | 'invalid-field'
  | 'invalid-ip'
  | 'invalid-cidr'
  | 'port-out-of-range'
  | 'unknown-protocol'
  | 'duplicate-port'
  | 'family-mismatch'
  | 'missing-service-name'
  | 'slice-without-service';

export const REJECTION_REASONS: readonly RejectionReason[] = [
  'decode-error',
  'malformed',
  'missing-field',
  'invalid-field',
  'invalid-ip',
  'invalid-cidr',
  'port-out-of-range',
  'unknown-protocol',
  'duplicate-port',
  'family-mismatch',
  'missing-service-name',
  'slice-without-service',
];

export interface Rejection {
  /** "Kind ns/name" of the object. */
  object: string;
  reason: RejectionReason;
  /** What exactly, e.g. "spec.externalIPs[1] \"1.2.3\"". */
  detail: string;
  /** Whether the whole object was dropped, or only the part named in detail. */
  dropped: 'object' | 'part';
}
