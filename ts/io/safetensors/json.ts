// A strict JSON parser for safetensors headers. JSON.parse keeps the last of two equal keys, so a header could name
// one tensor twice and two readers disagree on which bytes it means; this parser refuses a repeated key anywhere.
// Objects come back as Maps, so '__proto__' is an ordinary tensor name, and a number written with a fraction or an
// exponent comes back as a JsonNonInteger, because the format's reference reader does not take `2.0` or `1e3` as a
// shape or an offset either.

export class JsonNonInteger {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type JsonValue = null | boolean | number | string | JsonNonInteger | JsonValue[] | Map<string, JsonValue>;

/** Malformed JSON; `position` is a UTF-16 index into the text. */
export class JsonSyntaxError extends Error {
  constructor(
    why: string,
    readonly position: number,
  ) {
    super(`${why} at character ${position}`);
  }
}

/** A key that occurs twice in one object; `path` is the keys of the objects around it, outermost first. */
export class JsonDuplicateKey extends Error {
  constructor(
    readonly key: string,
    readonly path: readonly string[],
  ) {
    super(`duplicate key ${JSON.stringify(key)}`);
  }
}

// serde_json's recursion limit; a header has depth 3, and a deep one must not overflow the stack.
const MAX_DEPTH = 128;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

export function parseStrictJson(text: string): JsonValue {
  let i = 0;
  const path: string[] = [];
  const fail = (why: string, at = i): never => {
    throw new JsonSyntaxError(why, at);
  };
  const skipSpace = () => {
    for (let c = text.charCodeAt(i); c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = text.charCodeAt(++i));
  };
  const found = () => (i < text.length ? `unexpected ${JSON.stringify(text[i])}` : 'unexpected end of input');

  const str = (): string => {
    i++; // the opening quote
    let out = '';
    let from = i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x22) break;
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(from, i);
      const e = text[i + 1];
      if (e === 'u') {
        const hex = text.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else if (e !== undefined && Object.prototype.hasOwnProperty.call(ESCAPES, e)) {
        out += ESCAPES[e];
        i += 2;
      } else fail('bad escape');
      from = i;
    }
    out += text.slice(from, i);
    i++;
    return out;
  };

  const value = (depth: number): JsonValue => {
    skipSpace();
    const c = text[i];
    if (c === '"') return str();
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
      i++;
      skipSpace();
      if (c === '[') {
        const arr: JsonValue[] = [];
        if (text[i] === ']') {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value(depth + 1));
          skipSpace();
          if (text[i] === ',') i++;
          else if (text[i] === ']') {
            i++;
            return arr;
          } else fail(`${found()} in an array`);
        }
      }
      const obj = new Map<string, JsonValue>();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        skipSpace();
        if (text[i] !== '"') fail(`${found()} where a key should be`);
        const key = str();
        if (obj.has(key)) throw new JsonDuplicateKey(key, [...path]);
        skipSpace();
        if (text[i] !== ':') fail(`${found()} after a key`);
        i++;
        path.push(key);
        obj.set(key, value(depth + 1));
        path.pop();
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return obj;
        } else fail(`${found()} in an object`);
      }
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const)
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail(found());
    i += m[0].length;
    return m[1] !== undefined || m[2] !== undefined ? new JsonNonInteger(m[0]) : Number(m[0]);
  };

  const v = value(0);
  skipSpace();
  if (i < text.length) fail(`${found()} after the end of the JSON value`);
  return v;
}
