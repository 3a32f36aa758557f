// Validate Strimzi custom resources (JSON array on stdin) with the validators that
// @kubernetes-models/strimzi-kafka-operator compiled from Strimzi's CRD schemas (see ../README.md).
// Prints one JSON line per object: {"kind", "name", "errors": [..]}; exits 1 when any is invalid.
import fs from "node:fs";

const objects = JSON.parse(fs.readFileSync(0, "utf8"));
let bad = 0;
for (const obj of objects) {
  const [group, version] = obj.apiVersion.split("/");
  const mod = await import(`@kubernetes-models/strimzi-kafka-operator/${group}/${version}/${obj.kind}`);
  const errors = [];
  try {
    new mod[obj.kind](obj).validate();
  } catch (err) {
    errors.push(String(err.message));
    bad += 1;
  }
  console.log(JSON.stringify({ kind: obj.kind, name: obj.metadata?.name, errors }));
}
process.exit(bad ? 1 : 0);
