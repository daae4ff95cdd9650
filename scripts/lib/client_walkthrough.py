"""scripts/openapi-client's walk-through: the account lifecycle and the admin
API, through the Python client generated from the served document only.

Usage: client_walkthrough.py BASE_URL MAILBOX_DIR ADMIN_API_KEY

Each step calls one generated operation and asserts its typed answer: the
status and the parsed model's fields. The only other input is the mailbox
(the keys the emails carry), read as the address's owner would.
"""

import importlib
import pkgutil
import secrets
import sys
import time

import porter_client.api
from porter_client import AuthenticatedClient, Client
from porter_client.models import (
    Accepted,
    Account,
    Activated,
    AdminAccount,
    AdminAccountStatus,
    BlockAccount,
    ChangePassword,
    EmailRequest,
    Error,
    NewWebhookSubscription,
    PasswordChanged,
    PublicEventPage,
    ResetPassword,
    Session,
    SignIn,
    SignUp,
    WebhookSubscription,
    WebhookSubscriptionList,
)

from porter_mail import link_key


def operation(operation_id):
    """The generated module of an operation, whichever tag's folder holds it."""
    for tag in pkgutil.iter_modules(porter_client.api.__path__):
        name = f"porter_client.api.{tag.name}.{operation_id}"
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
    raise SystemExit(f"the generated client has no operation {operation_id}")


(activate, admin_accounts, admin_add_webhook, admin_block, admin_events, admin_list_webhooks,
 admin_remove_webhook, admin_unblock, admin_webhook_rotate_secret, change_password, me,
 password_reset, password_reset_request, sign_in, sign_up) = map(operation, [
    "activate", "admin_accounts", "admin_add_webhook", "admin_block", "admin_events",
    "admin_list_webhooks", "admin_remove_webhook", "admin_unblock", "admin_webhook_rotate_secret",
    "change_password", "me", "password_reset", "password_reset_request", "sign_in", "sign_up"])

base_url, mailbox, admin_key = sys.argv[1:4]
public = Client(base_url=base_url, raise_on_unexpected_status=True)
admin = AuthenticatedClient(base_url=base_url, token=admin_key, raise_on_unexpected_status=True)


def step(name, response, status, model):
    """The parsed answer of `response`, once it is `status` with a `model`."""
    assert response.status_code == status, f"{name}: {response.status_code} {response.content!r}"
    assert isinstance(response.parsed, model), f"{name}: {type(response.parsed)}"
    print(f"openapi-client: {name}: {status} {model.__name__}", flush=True)
    return response.parsed


username = f"walk-{secrets.token_hex(4)}"
address = f"{username}@porter.example"
passwords = [secrets.token_urlsafe(18) for _ in range(3)]

accepted = step("sign-up", sign_up.sync_detailed(client=public, body=SignUp(
    username=username, email=address, password=passwords[0])), 202, Accepted)
assert accepted.status == "accepted"

activated = step("activation with the emailed key", activate.sync_detailed(
    link_key(mailbox, address, "/activate/"), client=public), 200, Activated)
assert activated.status == "active" and activated.already_active is False

session = step("sign-in", sign_in.sync_detailed(client=public, body=SignIn(
    login=username, password=passwords[0])), 201, Session)
assert len(session.token) == 64 and len(session.device_token) == 64
assert session.account.username == username and session.account.email == address
account_id = session.account.id
signed_in = AuthenticatedClient(base_url=base_url, token=session.token)

account = step("GET /api/me", me.sync_detailed(client=signed_in), 200, Account)
assert (account.id, account.username, account.email) == (account_id, username, address)

changed = step("password change", change_password.sync_detailed(client=signed_in, body=ChangePassword(
    current_password=passwords[0], new_password=passwords[1])), 200, PasswordChanged)
assert changed.status == "changed"
step("GET /api/me after the change (this session lives on)", me.sync_detailed(client=signed_in), 200, Account)

requested = step("reset request", password_reset_request.sync_detailed(
    client=public, body=EmailRequest(email=address)), 202, Accepted)
assert requested.status == "accepted"
reset = step("reset with the emailed key", password_reset.sync_detailed(
    link_key(mailbox, address, "/reset-password/"), client=public,
    body=ResetPassword(password=passwords[2])), 200, PasswordChanged)
assert reset.status == "changed"
ended = step("GET /api/me after the reset (every session ended)", me.sync_detailed(client=signed_in), 401, Error)
assert ended.error.code == "unauthenticated"
step("sign-in with the reset password", sign_in.sync_detailed(client=public, body=SignIn(
    login=address, password=passwords[2])), 201, Session)

by_email = step("admin lookup by email", admin_accounts.sync_detailed(client=admin, email=address), 200, AdminAccount)
by_username = step("admin lookup by username", admin_accounts.sync_detailed(
    client=admin, username=username.upper()), 200, AdminAccount)
for found in (by_email, by_username):
    assert (found.id, found.username, found.status) == (account_id, username, AdminAccountStatus.ACTIVE)
    assert found.open_sessions == 1

blocked = step("block", admin_block.sync_detailed(account_id, client=admin, body=BlockAccount(
    reason="walk-through")), 200, AdminAccount)
assert blocked.status == AdminAccountStatus.BLOCKED and blocked.block_reason == "walk-through"
assert blocked.open_sessions == 0
refused = step("sign-in while blocked", sign_in.sync_detailed(client=public, body=SignIn(
    login=username, password=passwords[2])), 403, Error)
assert refused.error.code == "account_blocked"
unblocked = step("unblock", admin_unblock.sync_detailed(account_id, client=admin), 200, AdminAccount)
assert unblocked.status == AdminAccountStatus.ACTIVE and unblocked.blocked_at is None

expected = ["account.registered", "account.activated", "account.password_changed",
            "account.password_changed", "account.blocked", "account.unblocked"]
deadline = time.monotonic() + 30
while True:
    page = step("events feed", admin_events.sync_detailed(client=admin, limit=1000), 200, PublicEventPage)
    mine = [event for event in page.events if event.account_id == account_id]
    if [str(event.type_) for event in mine] == expected or time.monotonic() > deadline:
        break
    time.sleep(0.5)
assert [str(event.type_) for event in mine] == expected, [str(event.type_) for event in mine]
assert all(event.id.startswith("evt_") for event in mine)

added = step("webhook add", admin_add_webhook.sync_detailed(client=admin, body=NewWebhookSubscription(
    url="http://127.0.0.1:9/porter-walk-through", types="account.blocked,account.unblocked")),
    201, WebhookSubscription)
assert added.state.value == "active" and added.secret.startswith("whsec_")
assert sorted(str(t) for t in added.event_types) == ["account.blocked", "account.unblocked"]
listed = step("webhook list", admin_list_webhooks.sync_detailed(client=admin), 200, WebhookSubscriptionList)
assert [s.id for s in listed.subscriptions] == [added.id]
rotated = step("webhook rotate-secret", admin_webhook_rotate_secret.sync_detailed(added.id, client=admin),
               200, WebhookSubscription)
assert rotated.secret.startswith("whsec_") and rotated.secret != added.secret
assert rotated.previous_secret_until is not None
removed = admin_remove_webhook.sync_detailed(added.id, client=admin)
assert removed.status_code == 204, removed.content
print("openapi-client: webhook remove: 204", flush=True)
listed = step("webhook list after the removal", admin_list_webhooks.sync_detailed(client=admin),
              200, WebhookSubscriptionList)
assert listed.subscriptions == []
print("openapi-client: walk-through passed", flush=True)
