// Test helper: the outcome message JSON Schema (schemas/outcome-v1.schema.json, else the
// block under "### JSON Schema" in docs/wire-format.md) compiled with ajv's 2020-12 draft.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export function loadSchema() {
  const file = join(ROOT, "schemas", "outcome-v1.schema.json");
  if (existsSync(file)) {
    return JSON.parse(readFileSync(file, "utf8"));
  }
  const doc = readFileSync(join(ROOT, "docs", "wire-format.md"), "utf8");
  const after = doc.slice(doc.indexOf("### JSON Schema"));
  const match = /```json\n([\s\S]*?)\n```/.exec(after);
  if (match === null) {
    throw new Error("no JSON Schema in docs/wire-format.md");
  }
  return JSON.parse(match[1]);
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
