// Turns `callbridge generate` output (JSON Lines: {"path": "events/call", "json": {...}}) into
// the signed webhook requests the wrk script replays: one line per request, `PATH<TAB>BODY`,
// BODY being Mango's form (`vpbx_api_key`, `sign` = sha256(api_key + json + salt) in lower-case
// hex, `json`), exactly what a VPBX posts. Signed here, before the clock starts, so the load
// generator spends no time hashing.
//
// Only the events the peer's router handles are kept (events/call, summary, recording, dtmf):
// the generator also writes events/record/added and events/record/tagged, which the peer's
// package does not know (404); both servers get the same bodies.
//
// Usage: node sign-bodies.js EVENTS.jsonl OUT.tsv TENANT API_KEY SALT
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const readline = require('readline');

const PEER_PATHS = new Set(['events/call', 'events/summary', 'events/recording', 'events/dtmf']);

async function main() {
    const [input, output, tenant, apiKey, salt] = process.argv.slice(2);
    if (!input || !output || !tenant || !apiKey || !salt) {
        throw new Error('usage: node sign-bodies.js EVENTS.jsonl OUT.tsv TENANT API_KEY SALT');
    }
    const out = fs.createWriteStream(output);
    const lines = readline.createInterface({ input: fs.createReadStream(input), crlfDelay: Infinity });
    const kept = {};
    let skipped = 0;
    let lineNo = 0;
    for await (const line of lines) {
        lineNo += 1;
        if (line.trim() === '') continue;
        let event;
        try {
            event = JSON.parse(line);
        } catch (err) {
            throw new Error(`${input}:${lineNo}: not JSON: ${err.message}`);
        }
        if (typeof event.path !== 'string' || event.json === null || typeof event.json !== 'object') {
            throw new Error(`${input}:${lineNo}: expected {"path": "...", "json": {...}}`);
        }
        if (!PEER_PATHS.has(event.path)) {
            skipped += 1;
            continue;
        }
        const json = JSON.stringify(event.json);
        const sign = crypto.createHash('sha256').update(apiKey + json + salt).digest('hex');
        const body = `vpbx_api_key=${encodeURIComponent(apiKey)}&sign=${sign}&json=${encodeURIComponent(json)}`;
        if (!out.write(`/mango/${tenant}/${event.path}\t${body}\n`)) {
            await new Promise((resolve) => out.once('drain', resolve));
        }
        kept[event.path] = (kept[event.path] || 0) + 1;
    }
    await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
    const total = Object.values(kept).reduce((a, b) => a + b, 0);
    if (total === 0) throw new Error(`${input}: no events the peer handles`);
    console.log(JSON.stringify({ bodies: total, kept, skipped_unknown_to_peer: skipped }));
}

main().catch((err) => {
    console.error(`sign-bodies: ${err.message}`);
    process.exit(1);
});
