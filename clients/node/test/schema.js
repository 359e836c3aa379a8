// Test helper: the outcome message JSON Schema (schemas/outcome-v1.schema.json, the one the
// decoder is checked against in transport-nats/tests/schemas.rs) compiled with ajv's
// 2020-12 draft.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export function loadSchema() {
  return JSON.parse(readFileSync(join(ROOT, "schemas", "outcome-v1.schema.json"), "utf8"));
}

/** A function that throws with ajv's errors unless `message` is valid. */
export function validator() {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const validate = ajv.compile(loadSchema());
  return (message) => {
    if (!validate(message)) {
      throw new Error(`invalid outcome message ${JSON.stringify(message)}: ${ajv.errorsText(validate.errors)}`);
    }
    return true;
  };
}
