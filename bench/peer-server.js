// The open peer for scripts/bench-vs-peer.sh: the npm package `mango-vpbx` mounted in Express
// exactly as its README's "API RealTime" example does (body-parser's urlencoded parser, then the
// package's events/call, summary, recording, dtmf, sms and ping handlers). Its event handlers are
// empty and it checks no signature, as the open peer does out of the box; it stores nothing.
//
// The only addition is a counter of the bodies the package parsed (its `data` event fires after
// JSON.parse of the `json` field), served on GET /bench/count, so the benchmark can check that
// the peer really parsed every request it acknowledged rather than answering early.
//
// Run from the folder the package was installed into: PORT=18081 node peer-server.js
'use strict';

const express = require('express');
const bodyParser = require('body-parser');
const VPBX = require('mango-vpbx');

const port = Number(process.env.PORT || 18081);
const app = express();
const vpbx = new VPBX();
const events = vpbx.events(`http://127.0.0.1:${port}/mango/bench`);

let parsed = 0;
const byEvent = {};

app.get('/bench/count', (req, res) => res.json({ parsed, byEvent }));

app.use(bodyParser.urlencoded({ extended: false }));
app.use(events.call);
app.use(events.summary);
app.use(events.recording);
app.use(events.dtmf);
app.use(events.sms);
app.use(events.ping);

events.on('data', (payload) => {
    if (payload !== null && typeof payload === 'object') {
        parsed += 1;
    }
});
for (const name of ['call', 'summary', 'recording', 'dtmf', 'sms', 'ping']) {
    events.on(name, () => {
        byEvent[name] = (byEvent[name] || 0) + 1;
    });
}

app.use((req, res) => res.status(404).send({ error: 'not found' }));
app.listen(port, '127.0.0.1', () => console.log(`peer listening on 127.0.0.1:${port}`));
