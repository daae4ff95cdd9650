"""The emails a porter under test wrote to its file:// mailbox (SMTP_URL=file://DIR).

Shared by scripts/schemathesis and scripts/openapi-client: reading these
files is the one way they learn a link's key, as the address's owner would.
"""

import email
import email.policy
import pathlib
import re
import time


def link_key(mailbox, address, page, seconds=60):
    """The key of the newest emailed link to `page` (e.g. "/activate/") sent to `address`."""
    pattern = re.compile(re.escape(page) + r"([A-Za-z0-9]{32})")
    deadline = time.monotonic() + seconds
    while True:
        found = []
        for path in pathlib.Path(mailbox).glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] and address in message["To"]:
                match = pattern.search(message.get_body(("plain",)).get_content())
                if match:
                    found.append((path.stat().st_mtime_ns, match.group(1)))
        if found:
            return max(found)[1]
        if time.monotonic() > deadline:
            raise SystemExit(f"no email to {address} with a {page} link within {seconds} s")
        time.sleep(0.2)
