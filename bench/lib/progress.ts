/**
 * Progress on stderr, so stdout carries only the results. On a TTY one live line is rewritten
 * in place (\r) a few times a second; otherwise every finished step is a plain line.
 */
export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Force the live line on or off (default: the stream is a TTY). */
  live?: boolean;
  /** Print nothing at all. */
  quiet?: boolean;
}

export class Progress {
  readonly live: boolean;
  #stream: NodeJS.WriteStream;
  #quiet: boolean;
  #status: (() => string) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #shown = false;
  #t0 = performance.now();

  constructor(opts: ProgressOptions = {}) {
    this.#stream = opts.stream ?? process.stderr;
    this.#quiet = opts.quiet ?? false;
    this.live = !this.#quiet && (opts.live ?? this.#stream.isTTY === true);
  }

  /** Seconds since the suite started. */
  get elapsed(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Show `status()` as the live line until the next begin()/end() (TTY only). */
  begin(status: () => string): void {
    this.#status = status;
    if (!this.live) return;
    this.#draw();
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#draw(), 250);
    this.#timer.unref();
  }

  /** A permanent line: on a TTY it replaces the live line, which is drawn again below it. */
  log(line: string): void {
    if (this.#quiet) return;
    if (this.live) {
      this.#stream.write(`\r\x1b[K${line}\n`);
      this.#shown = false;
      if (this.#status) this.#draw();
    } else {
      this.#stream.write(`${line}\n`);
    }
  }

  /** Stop the live line (and erase it). */
  end(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#status = undefined;
    if (this.live && this.#shown) this.#stream.write('\r\x1b[K');
    this.#shown = false;
  }

  #draw(): void {
    if (this.#status === undefined) return;
    const cols = this.#stream.columns ?? 120;
    let text = this.#status();
    if (text.length > cols - 1) text = `${text.slice(0, cols - 2)}…`;
    this.#stream.write(`\r\x1b[K${text}`);
    this.#shown = true;
  }
}
