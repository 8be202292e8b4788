// Owns counters for the hot path: fixed label sets counted in plain numbers, handed to prom-client at scrape.
import { Counter, type CounterConfiguration, type LabelValues } from 'prom-client';

/**
 * A prom-client Counter (same name, help, labels and output) whose children are plain numbers:
 * `inc()` is one addition, and the counts are added to the Counter when the registry collects it,
 * i.e. on every scrape. prom-client's own children hash and validate their label set on every inc().
 * Use it for label sets fixed at start-up; label values known only per event go through the Counter.
 */
export function batchedCounter<T extends string>(config: CounterConfiguration<T>) {
  const children: { labels: LabelValues<T>; n: number }[] = [];
  const counter = new Counter<T>({
    ...config,
    collect() {
      for (const child of children) {
        if (child.n === 0) continue;
        this.inc(child.labels, child.n);
        child.n = 0;
      }
    },
  });
  return {
    counter,
    /** A child for one fixed label set; its series appears at the first scrape after its first inc(). */
    child(labels: LabelValues<T>): { inc(): void } {
      const child = { labels, n: 0 };
      children.push(child);
      return {
        inc() {
          child.n++;
        },
      };
    },
  };
}
