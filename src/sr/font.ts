/**
 * A 5 × 7 bitmap font embedded in the code, for the text burned into the secondary captures. No system
 * font is used: a fresh server may have none, and the SC must look the same everywhere.
 *
 * Covers space, digits, A–Z and common punctuation. Lower-case letters are drawn as capitals; any other
 * character is drawn as '?'. Each glyph is 7 rows of 5 columns ('#' = ink), advancing 6 columns.
 */

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;
/** Horizontal advance of one character (glyph + 1 column of spacing), in font pixels. */
export const GLYPH_ADVANCE = 6;

const RAW: Record<string, string> = {
  ' ': '..... ..... ..... ..... ..... ..... .....',
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '###.. #..#. #...# #...# #...# #..#. ###..',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  ',': '..... ..... ..... ..... .##.. ..#.. .#...',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  ';': '..... .##.. .##.. ..... .##.. ..#.. .#...',
  '-': '..... ..... ..... ##### ..... ..... .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  '=': '..... ..... ##### ..... ##### ..... .....',
  '/': '..... ....# ...#. ..#.. .#... #.... .....',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '[': '.###. .#... .#... .#... .#... .#... .###.',
  ']': '.###. ...#. ...#. ...#. ...#. ...#. .###.',
  '<': '...#. ..#.. .#... #.... .#... ..#.. ...#.',
  '>': '.#... ..#.. ...#. ....# ...#. ..#.. .#...',
  '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
  '_': '..... ..... ..... ..... ..... ..... #####',
  '#': '.#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.',
  '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
  '!': '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..',
  "'": '..#.. ..#.. .#... ..... ..... ..... .....',
  '*': '..... ..#.. #.#.# .###. #.#.# ..#.. .....',
  '|': '..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  '^': '..#.. .#.#. #...# ..... ..... ..... .....',
};

/** One glyph: GLYPH_HEIGHT rows, each a bit mask of GLYPH_WIDTH columns (bit 4 = leftmost). */
export type Glyph = readonly number[];

function parseGlyph(ch: string, spec: string): Glyph {
  const rows = spec.split(' ');
  if (rows.length !== GLYPH_HEIGHT || rows.some((r) => r.length !== GLYPH_WIDTH || /[^#.]/.test(r))) {
    throw new Error(`font: glyph '${ch}' must be ${GLYPH_HEIGHT} rows of ${GLYPH_WIDTH} '#'/'.' characters`);
  }
  return Object.freeze(rows.map((r) => [...r].reduce((m, c) => (m << 1) | (c === '#' ? 1 : 0), 0)));
}

const GLYPHS: ReadonlyMap<string, Glyph> = new Map(Object.entries(RAW).map(([ch, spec]) => [ch, parseGlyph(ch, spec)]));

/** Characters the font draws as themselves (lower-case letters are drawn as capitals). */
export const FONT_CHARACTERS: string = [...GLYPHS.keys()].join('');

/** The glyph of a character: lower case → capital, unknown → '?'. */
export function glyphFor(ch: string): Glyph {
  return GLYPHS.get(ch) ?? GLYPHS.get(ch.toUpperCase()) ?? GLYPHS.get('?')!;
}

/** Width in pixels of `text` drawn at `scale` (no trailing spacing column). */
export function textWidth(text: string, scale = 1): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * GLYPH_ADVANCE - 1) * scale;
}

/** Height in pixels of one line drawn at `scale`. */
export function textHeight(scale = 1): number {
  return GLYPH_HEIGHT * scale;
}
