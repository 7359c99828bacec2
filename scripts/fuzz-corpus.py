#!/usr/bin/env python3
"""Seeds the fuzz corpus (fuzz/corpus/<target>/) from the project's own scenarios and examples.

Run from the repository root after a scenario or an example changes; the files are committed.
Each seed is named by the sha1 of its bytes (as libFuzzer names what it finds), so running this
again adds only what is new.
"""
import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
# The order of the `webhook` target's PATHS (crates/fuzz-targets/src/lib.rs).
PATHS = ["events/call", "events/summary", "events/recording", "events/record/added",
         "events/record/tagged", "events/dtmf"]
API_KEY = "fuzz-api-key"
SALT = "fuzz-salt-0123456789"


def put(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def form(json_text):
    from urllib.parse import urlencode
    sign = hashlib.sha256((API_KEY + json_text + SALT).encode()).hexdigest()
    return urlencode({"vpbx_api_key": API_KEY, "sign": sign, "json": json_text}).encode()


for scenario in sorted((ROOT / "scenarios").iterdir()):
    settings = scenario / "settings.toml"
    if settings.exists():
        put("settings", settings.read_bytes())
    events = scenario / "events.jsonl"
    if not events.exists():
        continue
    seen = set()
    for line in events.read_text().splitlines():
        if not line.strip():
            continue
        hook = json.loads(line)
        path = hook["path"].strip("/")
        state = hook["json"].get("call_state")
        if path not in PATHS or (path, state) in seen:
            continue
        seen.add((path, state))
        text = json.dumps(hook["json"], ensure_ascii=False, separators=(",", ":"))
        index = bytes([PATHS.index(path)])
        put("webhook", index + b"\x01" + text.encode())
        put("webhook", index + b"\x00" + form(text))

for example in sorted((ROOT / "examples").glob("*.toml")):
    put("config" if "settings" not in example.name else "settings", example.read_bytes())
put("config", b'admin_token = "a-long-and-varied-admin-token-4f9c2e1b"\n')
put("config", b'admin_token = "a-long-and-varied-admin-token-4f9c2e1b"\nlisten = "127.0.0.1:0"\n'
              b'[[tenants]]\nid = "acme"\nmango_api_key = "k"\nmango_api_salt = "0123456789abcdef"\n')

# The events target: the sample programs of crates/fuzz-targets/src/events.rs, and a few more.
for program in (
    [0, 0x00, 0, 0x06, 1, 0, 0x00, 1, 0x06, 5, 0, 0x00, 2, 0x06, 30, 0, 0x91, 0, 0x10, 44, 0,
     0x91, 1, 0x10, 44, 0, 0x00, 3, 0x06, 2, 0, 0xA1, 1, 0x16, 40, 0, 0xA1, 3, 0x16, 60],
    [0, 0, 0, 0x72, 1, 0, 0, 3, 0x72, 30, 3, 2, 0x72, 0, 1],
    [0, 0, 0, 0x30, 1, 0, 0, 1, 0x30, 3, 0, 0, 3, 0x30, 20, 15, 0, 1, 6, 1, 12, 0, 0, 0, 1],
    [0, 0x40, 0, 0x16, 1, 0, 0x41, 0, 0x17, 1, 0, 0x41, 1, 0x17, 3, 0, 0x41, 3, 0x17, 20,
     0, 0x40, 3, 0x16, 1, 3, 1, 0x16, 0, 1],
    [8, 0, 0, 0x10, 1, 0, 1, 0, 0x21, 1, 8, 0, 1, 0x10, 2, 0, 0x91, 1, 0x21, 2, 4, 1, 0, 0, 3,
     5, 1, 0, 0, 9, 6, 1, 0, 0, 9],
):
    put("events", bytes(program))
