/** Small pure image helpers for the ED/ES chooser (row-major Float32 images). */

/** Otsu threshold of the values (histogram of `bins` bins between min and max). */
export function otsuThreshold(values: ArrayLike<number>, bins = 256): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(hi > lo)) return lo;
  const hist = new Float64Array(bins);
  const scale = (bins - 1) / (hi - lo);
  for (let i = 0; i < values.length; i++) hist[Math.round((values[i]! - lo) * scale)]!++;
  const total = values.length;
  let sumAll = 0;
  for (let b = 0; b < bins; b++) sumAll += b * hist[b]!;
  let w0 = 0;
  let sum0 = 0;
  let best = -1;
  let bestB = 0;
  for (let b = 0; b < bins - 1; b++) {
    w0 += hist[b]!;
    sum0 += b * hist[b]!;
    const w1 = total - w0;
    if (w0 === 0 || w1 === 0) continue;
    const m0 = sum0 / w0;
    const m1 = (sumAll - sum0) / w1;
    const between = w0 * w1 * (m0 - m1) ** 2;
    if (between > best) {
      best = between;
      bestB = b;
    }
  }
  return lo + (bestB + 0.5) / scale;
}

/** Separable box blur with radius r (window 2r+1), edges clamped. */
export function boxBlur(img: Float32Array, rows: number, columns: number, r: number): Float32Array {
  if (r <= 0) return Float32Array.from(img);
  const tmp = new Float32Array(img.length);
  const out = new Float32Array(img.length);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      let s = 0;
      let n = 0;
      for (let k = Math.max(0, x - r); k <= Math.min(columns - 1, x + r); k++) {
        s += img[y * columns + k]!;
        n++;
      }
      tmp[y * columns + x] = s / n;
    }
  }
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      let s = 0;
      let n = 0;
      for (let k = Math.max(0, y - r); k <= Math.min(rows - 1, y + r); k++) {
        s += tmp[k * columns + x]!;
        n++;
      }
      out[y * columns + x] = s / n;
    }
  }
  return out;
}

/** 4-connected components of a mask: label image (0 = background) and component sizes (index = label). */
export function connectedComponents(mask: Uint8Array, rows: number, columns: number): { labels: Int32Array; sizes: number[] } {
  const labels = new Int32Array(mask.length);
  const sizes = [0];
  const stack: number[] = [];
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i] || labels[i]) continue;
    const label = sizes.length;
    let size = 0;
    labels[i] = label;
    stack.push(i);
    while (stack.length) {
      const p = stack.pop()!;
      size++;
      const y = (p / columns) | 0;
      const x = p - y * columns;
      const visit = (q: number) => {
        if (mask[q] && !labels[q]) {
          labels[q] = label;
          stack.push(q);
        }
      };
      if (x > 0) visit(p - 1);
      if (x < columns - 1) visit(p + 1);
      if (y > 0) visit(p - columns);
      if (y < rows - 1) visit(p + columns);
    }
    sizes.push(size);
  }
  return { labels, sizes };
}

/** Binary dilation with a square of radius r. */
export function dilate(mask: Uint8Array, rows: number, columns: number, r: number): Uint8Array {
  if (r <= 0) return Uint8Array.from(mask);
  const blurred = boxBlur(Float32Array.from(mask), rows, columns, r);
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = blurred[i]! > 1e-6 ? 1 : 0;
  return out;
}
