/** Bad usage of the command line: main prints its message and exits 2. */
export class UsageError extends Error {}
