/** An ISO-8601 timestamp stored as text, e.g. `2026-11-24T22:04:37.000Z`. */
export type IsoDate = string & { readonly __brand: 'IsoDate' };
/** A JSON document stored as text. */
export type JsonText<T> = string & { readonly __json: T };

export function isoNow(): IsoDate {
  return new Date().toISOString() as IsoDate;
}

export function toIso(date: Date): IsoDate {
  return date.toISOString() as IsoDate;
}

export function toJsonText<T>(value: T): JsonText<T> {
  return JSON.stringify(value) as JsonText<T>;
}

export function fromJsonText<T>(text: JsonText<T>): T {
  return JSON.parse(text) as T;
}
