/** A one-line progress bar on a terminal; plain lines (at most every 10%) otherwise. */
export function progressReporter(label: string, stream: NodeJS.WriteStream = process.stderr): { update(done: number, total: number): void; end(): void } {
  const tty = stream.isTTY === true;
  let lastTenth = -1;
  let shown = false;
  return {
    update(done, total) {
      if (total <= 0) return;
      const frac = done / total;
      if (tty) {
        const width = 30;
        const fill = Math.round(frac * width);
        stream.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${done}/${total}`);
        shown = true;
      } else {
        const tenth = Math.floor(frac * 10);
        if (tenth !== lastTenth) {
          lastTenth = tenth;
          stream.write(`${label}: ${done}/${total}\n`);
        }
      }
    },
    end() {
      if (tty && shown) stream.write('\n');
    },
  };
}
