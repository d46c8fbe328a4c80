/**
 * A secret value that cannot reach a log, a JSON body or a template string by accident:
 * every implicit conversion yields '[REDACTED]'. Only `reveal()` gives the value, and only the
 * injector calls it, when it builds the upstream request.
 */
const INSPECT = Symbol.for('nodejs.util.inspect.custom')

export class Secret {
  readonly #value: string

  constructor(value: string) {
    this.#value = value
  }

  reveal(): string {
    return this.#value
  }

  toString(): string {
    return '[REDACTED]'
  }

  toJSON(): string {
    return '[REDACTED]'
  }

  [Symbol.toPrimitive](): string {
    return '[REDACTED]'
  }

  [INSPECT](): string {
    return 'Secret([REDACTED])'
  }
}
