// The conformance Worker: runs one case on a fresh D1 database of workerd's real D1 engine (Miniflare).
// POST /?db=N  {"setup": [sql, ...], "sql": "...", "params": [...]}  or  {"setup": [...], "batch": [{sql, params}, ...]}
// Answers {"ok": true, "results": [{"results": [...], "meta": {...}}, ...]}, {"ok": false, "error": "..."}
// or {"setup_error": "..."}. Errors lose the binding's "D1_ERROR: " prefix, which the REST API does not send.
function message(error) {
  const text = String(error && error.message !== undefined ? error.message : error);
  return text.startsWith("D1_ERROR: ") ? text.slice("D1_ERROR: ".length) : text;
}

function element(result) {
  const meta = result.meta || {};
  return {
    results: result.results,
    meta: { changes: meta.changes, last_row_id: meta.last_row_id, changed_db: meta.changed_db },
  };
}

export default {
  async fetch(request, env) {
    const db = env["DB" + new URL(request.url).searchParams.get("db")];
    if (!db) return Response.json({ setup_error: "no such database binding" }, { status: 400 });
    const body = await request.json();
    for (const sql of body.setup || []) {
      try {
        await db.prepare(sql).run();
      } catch (error) {
        return Response.json({ setup_error: `${sql}: ${message(error)}` });
      }
    }
    try {
      let results;
      if (body.batch) {
        results = await db.batch(body.batch.map((s) => db.prepare(s.sql).bind(...(s.params || []))));
      } else {
        results = [await db.prepare(body.sql).bind(...(body.params || [])).all()];
      }
      return Response.json({ ok: true, results: results.map(element) });
    } catch (error) {
      return Response.json({ ok: false, error: message(error) });
    }
  },
};
