// Writes docs/flags.md from the flag table: `npm run docs:flags`.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { flagsDoc } from './commands.ts';

export const FLAGS_DOC_PATH = fileURLToPath(new URL('../../docs/flags.md', import.meta.url));

if (import.meta.main) writeFileSync(FLAGS_DOC_PATH, flagsDoc());
