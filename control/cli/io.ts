// Where a command writes; tests capture it, main.ts binds it to the process.
export interface CommandIO {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const processIO: CommandIO = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};
