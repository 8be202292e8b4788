// Owns teardown for the bench scripts: child processes, the database and Redis keys go away on any exit path.

type Task = { name: string; run: () => Promise<void> | void };

/** Each teardown step gets this long; a hung step must not keep the machine busy. */
const TASK_TIMEOUT_MS = 30_000;

export class Cleanup {
  private readonly tasks: Task[] = [];
  /** Pids still alive: killed synchronously on 'exit' if the async path never ran (e.g. process.exit elsewhere). */
  private readonly pids = new Set<number>();
  private running: Promise<void> | undefined;
  /** Called first on a signal, e.g. to stop the load generator mid-run. */
  onInterrupt: (() => void) | undefined;

  /** Registers a step; steps run last-added first. Returns a function that unregisters it. */
  add(name: string, run: Task['run']): () => void {
    const task = { name, run };
    this.tasks.push(task);
    return () => {
      const i = this.tasks.indexOf(task);
      if (i >= 0) this.tasks.splice(i, 1);
    };
  }

  trackPid(pid: number): void {
    this.pids.add(pid);
  }

  untrackPid(pid: number): void {
    this.pids.delete(pid);
  }

  /** The children still running (the bench's servers). */
  get trackedPids(): ReadonlySet<number> {
    return this.pids;
  }

  /** Runs every step once, in reverse order; failures are reported and do not stop later steps. */
  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.tasks.length > 0) {
        const task = this.tasks.pop() as Task;
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(task.run),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error('timed out')), TASK_TIMEOUT_MS);
            }),
          ]);
        } catch (err) {
          process.stderr.write(`cleanup: ${task.name} failed: ${err instanceof Error ? err.message : err}\n`);
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.running;
  }

  /**
   * SIGINT/SIGTERM, uncaught errors and a hard deadline all end in run(); 'exit' kills any child
   * still tracked, so nothing outlives the script even when the async teardown could not finish.
   */
  install(deadlineMinutes: number): void {
    const finish = (code: number, why: string) => {
      process.stderr.write(`\n${why}: cleaning up\n`);
      this.onInterrupt?.();
      void this.run().finally(() => process.exit(code));
    };
    process.once('SIGINT', () => finish(130, 'SIGINT'));
    process.once('SIGTERM', () => finish(143, 'SIGTERM'));
    process.on('uncaughtException', (err) => {
      process.stderr.write(`${err.stack ?? err}\n`);
      finish(1, 'uncaught exception');
    });
    process.on('unhandledRejection', (err) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      finish(1, 'unhandled rejection');
    });
    const deadline = setTimeout(
      () => finish(1, `hard deadline of ${deadlineMinutes} min reached`),
      deadlineMinutes * 60_000,
    );
    deadline.unref();
    process.on('exit', () => {
      for (const pid of this.pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }
}
