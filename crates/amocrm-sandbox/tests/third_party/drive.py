"""Drives the amoCRM sandbox with a third-party client library (PyPI amocrm-api 2.6.1).

Usage: drive.py BASE_URL CLIENT_ID CLIENT_SECRET REDIRECT_URI CODE

The library only talks to https://{subdomain}.amocrm.ru, so the one patch here rewrites that
prefix to the sandbox's base URL on the way out of requests' Session.request; building the
requests, sending them and reading the answers is the library's own code. A second, test-only
patch makes the library believe its access token has expired once, so that its own refresh path
runs. Prints one JSON document with what happened; exits non-zero on any surprise.
"""

import json
import sys

import requests

BASE, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CODE = sys.argv[1:6]
SUBDOMAIN = "sandbox"
AMO_PREFIX = "https://%s.amocrm.ru" % SUBDOMAIN

_original_request = requests.sessions.Session.request


def _to_sandbox(self, method, url, *args, **kwargs):
    if isinstance(url, str) and url.startswith(AMO_PREFIX):
        url = BASE + url[len(AMO_PREFIX):]
    return _original_request(self, method, url, *args, **kwargs)


requests.sessions.Session.request = _to_sandbox

from amocrm.v2 import Call, Contact, exceptions, tokens  # noqa: E402  (after the patch)

_force_expiry = []
_original_is_expire = tokens.TokenManager._is_expire


def _is_expire(token):
    if _force_expiry:
        _force_expiry.pop()
        return True
    return _original_is_expire(token)


tokens.TokenManager._is_expire = staticmethod(_is_expire)


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


storage = tokens.MemoryTokensStorage()
manager = tokens.default_token_manager
manager(
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    subdomain=SUBDOMAIN,
    redirect_url=REDIRECT_URI,
    storage=storage,
)

# 1. OAuth: exchange the code (the library also decodes the JWT's exp from now on).
manager.init(code=CODE)
first_access = storage.get_access_token()
first_refresh = storage.get_refresh_token()
if not first_access or not first_refresh:
    fail("no tokens after init")

# 2. Contact search by phone.
found = list(Contact.objects.filter(query="+7 916 123-45-67"))
if len(found) != 1:
    fail("expected one contact, found %d" % len(found))
contact = found[0]

# 3. Refresh through the library, then show that the old refresh token is refused.
_force_expiry.append(True)
again = Contact.objects.get(contact.id)
second_access = storage.get_access_token()
second_refresh = storage.get_refresh_token()
if second_access == first_access or second_refresh == first_refresh:
    fail("the library did not refresh")
storage.save_tokens(second_access, first_refresh)
revoked = None
try:
    manager._get_new_tokens()
except EnvironmentError as e:  # the library raises this with the server's JSON body
    revoked = str(e)
storage.save_tokens(second_access, second_refresh)
if revoked is None:
    fail("reusing a refresh token was accepted")

# 4. A call through the calls API: it lands on the contact (no leads).
call = Call().create(
    direction="inbound",
    phone="8 (916) 123-45-67",
    source="amocrm-api-tp",
    duration=42,
    uniq="tp-call-1",
    link="https://pbx.example.com/tp-call-1.mp3",
    result="Talked",
    status=4,
    responsible_user_id=1001,
    created_by=1001,
)

# 5. A call to an unknown number: the library raises its ValidationError on the 400.
unknown_error = None
try:
    Call().create(direction="outbound", phone="+1 555 000 0000", source="amocrm-api-tp",
                  duration=1, uniq="tp-call-2", link="https://pbx.example.com/x.mp3",
                  result="-", status=6)
except exceptions.ValidationError as e:
    unknown_error = e.args[0] if e.args else None
if unknown_error is None:
    fail("a call to an unknown number was accepted")

# 6. A call_out note on the contact through the library's notes manager.
Note = contact.notes
note = Note.objects.create(data={
    "note_type": "call_out",
    "params": {
        "uniq": "tp-note-1",
        "duration": 17,
        "source": "amocrm-api-tp",
        "phone": "+79161234567",
        "link": "https://pbx.example.com/tp-note-1.mp3",
    },
})
notes = list(Note.objects.all())

print(json.dumps({
    "contact_id": contact.id,
    "contact_name": contact.name,
    "refetched_id": again.id,
    "refreshed": True,
    "revoked_message": revoked,
    "call": call,
    "unknown_error": unknown_error,
    "note_id": note.id,
    "notes_seen": [n.id for n in notes],
}))
