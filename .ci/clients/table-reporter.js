// A node --test reporter writing the suite's table (README.md shows one):
// each test is named "<SDK> · <call> · <HTTP route>"; a row per test with its
// result (pass, or FAIL and the first line of the error).
export default async function* table(source) {
  const rows = [];
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const parts = event.data.name.split(" · ");
    if (parts.length !== 3) continue; // a suite, not a call
    let result = "pass";
    if (event.type === "test:fail") {
      const err = event.data.details?.error;
      const msg = String(err?.cause?.message ?? err?.message ?? "failed").split("\n")[0];
      result = `**FAIL**: ${msg}`;
    }
    rows.push([...parts, result].map((c) => c.replace(/\|/g, "\\|")));
  }
  yield "| SDK | call | HTTP route (Sigil) | result |\n|---|---|---|---|\n";
  for (const r of rows) yield `| ${r.join(" | ")} |\n`;
}
