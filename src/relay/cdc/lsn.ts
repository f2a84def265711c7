/**
 * PostgreSQL log sequence numbers ("16/B374D848") as bigints, for comparing
 * and for the +/-1 that pg-logical-replication's acknowledge() adds.
 */

export type Lsn = bigint;

export function parseLsn(text: string): Lsn {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!match) throw new Error(`not an LSN: "${text}"`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  const high = (lsn >> 32n).toString(16).toUpperCase();
  const low = (lsn & 0xffffffffn).toString(16).toUpperCase().padStart(8, '0');
  return `${high}/${low}`;
}

export const ZERO_LSN: Lsn = 0n;
